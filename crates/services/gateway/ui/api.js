// How every ViewModel talks to the shop: JSON over fetch, authenticated by a bearer token
// (tests in Node) or by the session cookie (the shop's page), and every problem+json
// turned into a ProblemError whose words a person can act on.
// No imports and no DOM: ViewModels and their tests in Node use it as it is.

export class ProblemError extends Error {
  constructor(status, problem, retryAfter) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
    this.retryAfter = retryAfter;
  }
}

/**
 * An API client on `base` (the gateway's origin; '' in the browser). In the shop's page
 * (`page: true`) the browser sends the session cookie, and every request says it comes
 * from the page: the gateway then keeps the token from login answers and accepts the
 * cookie on requests that change something.
 */
export function createApi({ base = '', token = () => null, page = false } = {}) {
  async function send(method, path, body) {
    const headers = { accept: 'application/json' };
    if (page) headers['x-requested-with'] = 'mall';
    const bearer = token();
    if (bearer) headers.authorization = `Bearer ${bearer}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    let response;
    try {
      response = await fetch(`${base}${path}`, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (cause) {
      throw new ProblemError(0, { title: 'unreachable', detail: String(cause) });
    }
    const text = await response.text();
    const json = text ? safeJson(text) : null;
    if (!response.ok) {
      const retryAfter = Number(response.headers.get('retry-after')) || null;
      throw new ProblemError(response.status, json ?? { detail: text }, retryAfter);
    }
    return json;
  }
  return {
    get: (path) => send('GET', path),
    post: (path, body = {}) => send('POST', path, body),
    patch: (path, body) => send('PATCH', path, body),
    delete: (path) => send('DELETE', path),
  };
}

function safeJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

/** What went wrong, in plain words, in English and Korean. */
export function describe(error) {
  if (!(error instanceof ProblemError)) {
    return { en: 'Something went wrong. Please try again.', ko: '문제가 생겼습니다. 다시 시도해 주세요.' };
  }
  const detail = error.problem?.detail ?? '';
  const wait = error.retryAfter ? ` (${error.retryAfter}s)` : '';
  switch (error.status) {
    case 0:
      return { en: 'The shop cannot be reached. Check your connection and try again.', ko: '쇼핑몰에 연결할 수 없습니다. 연결을 확인하고 다시 시도해 주세요.' };
    case 400:
    case 422:
      return { en: `Please check what you entered: ${detail}`, ko: `입력한 내용을 확인해 주세요: ${detail}` };
    case 401:
      return { en: 'Please log in (again).', ko: '로그인해 주세요.' };
    case 403:
      return { en: 'Only administrators can do that.', ko: '관리자만 할 수 있습니다.' };
    case 404:
      return { en: 'We could not find that.', ko: '찾을 수 없습니다.' };
    case 409:
      return { en: `That is not possible right now: ${detail}`, ko: `지금은 할 수 없습니다: ${detail}` };
    case 429:
      return { en: `Too many requests. Please wait a moment${wait}.`, ko: `요청이 너무 많습니다. 잠시 후 다시 시도해 주세요${wait}.` };
    case 502:
    case 503:
    case 504:
      return { en: `This part of the shop is unavailable right now. Please try again shortly${wait}.`, ko: `이 기능을 지금 사용할 수 없습니다. 잠시 후 다시 시도해 주세요${wait}.` };
    default:
      return { en: 'Something went wrong on our side. Please try again.', ko: '서버에 문제가 생겼습니다. 다시 시도해 주세요.' };
  }
}
