// <mall-operations>: the shop's operations view for admins, with no Grafana needed: each
// service's health, traffic, errors, p99, outbox, consumer lag, dead letters and
// breakers, and the saga's SLI, read by the gateway from every instance and followed
// live while the view is shown.

import { OperationsViewModel } from './operations-vm.js';
import { t, when } from './i18n.js';
import { MallView, api, errorBox, esc } from './view.js';

const BREAKER = {
  closed: { en: 'closed', ko: '닫힘' },
  half_open: { en: 'probing', ko: '시험 중' },
  open: { en: 'open', ko: '열림' },
};

/** The gateway's own reasons, which it words in English; a service's are shown as given. */
const REASONS = [
  [/^no answer within (\d+) ms$/, (ms) => ({ en: `no answer within ${ms} ms`, ko: `${ms}ms 안에 응답 없음` })],
  [/^cannot connect: (.*)$/, (why) => ({ en: `cannot connect: ${why}`, ko: `연결할 수 없음: ${why}` })],
];

function reason(text) {
  for (const [pattern, words] of REASONS) {
    const match = text.match(pattern);
    if (match) return t(words(match[1]));
  }
  return text;
}

function locale() {
  return t({ en: 'en-US', ko: 'ko-KR' });
}

function number(n, digits = 2) {
  return n === null || n === undefined ? '—' : Number(n).toLocaleString(locale(), { maximumFractionDigits: digits });
}

function percent(share) {
  return share === null || share === undefined ? '—' : `${(share * 100).toFixed(1)} %`;
}

function millis(seconds) {
  return seconds === null || seconds === undefined ? '—' : `${number(seconds * 1000, 1)} ms`;
}

/** `group: count` pairs of a figure kept per consumer group (or per upstream). */
function pairs(map, show = number) {
  const entries = Object.entries(map ?? {});
  return entries.length ? entries.map(([key, value]) => `${esc(key)}: ${esc(show(value))}`).join('<br>') : '—';
}

function health(s) {
  const ready = s.instances.filter((i) => i.ready).length;
  const count = s.instances.length;
  const word = s.ready ? t({ en: 'Ready', ko: '정상' }) : t({ en: 'Down', ko: '중단' });
  const of = count > 1 ? ` <span class="muted">${esc(t({ en: `${ready} of ${count} ready`, ko: `${count}개 중 ${ready}개 정상` }))}</span>` : '';
  const why = s.instances
    .filter((i) => i.reason)
    .map((i) => `<br><span class="muted" data-testid="operations-reason">${esc(count > 1 ? `${i.url}: ` : '')}${esc(reason(i.reason))}</span>`)
    .join('');
  return `<span class="status ${s.ready ? 'final-good' : 'final-bad'}" data-testid="operations-health">${esc(word)}</span>${of}${why}`;
}

function row(s) {
  const deadLetters = Object.values(s.dead_letters ?? {}).some((n) => n > 0);
  const breakerOpen = Object.values(s.breakers ?? {}).some((b) => b !== 'closed');
  return `<tr data-service="${esc(s.service)}">
      <th scope="row">${esc(s.service)}</th>
      <td>${health(s)}</td>
      <td>${esc(number(s.requests_per_second))}</td>
      <td>${esc(number(s.errors_per_second))}</td>
      <td>${esc(percent(s.error_ratio))}</td>
      <td>${esc(millis(s.p99_seconds))}</td>
      <td>${esc(number(s.outbox_backlog, 0))}</td>
      <td>${pairs(s.consumer_lag, (n) => number(n, 0))}</td>
      <td${deadLetters ? ' class="soldout"' : ''}>${pairs(s.dead_letters, (n) => number(n, 0))}</td>
      <td${breakerOpen ? ' class="soldout"' : ''}>${pairs(s.breakers, (b) => t(BREAKER[b] ?? { en: b, ko: b }))}</td>
    </tr>`;
}

function saga(vm) {
  const saga = vm.saga;
  if (!saga) return '';
  const seconds = number(saga.threshold_seconds, 1);
  const interval = vm.reading.interval_seconds;
  const now = saga.confirmed_in_time;
  const tone = now === null ? '' : now >= saga.objective ? 'final-good' : 'final-bad';
  return `<div data-testid="operations-saga">
      <h3>${esc(t({ en: `Orders confirmed within ${seconds} s`, ko: `${seconds}초 안에 확정된 주문` }))}</h3>
      <p><span class="status ${tone}" data-testid="operations-sli">${esc(percent(now))}</span>
        ${interval === null ? '' : esc(t({ en: `in the last ${number(interval, 1)} s`, ko: `최근 ${number(interval, 1)}초` }))} ·
        ${esc(t({ en: `${percent(saga.confirmed_in_time_since_start)} since order started`, ko: `주문 서비스 시작 이후 ${percent(saga.confirmed_in_time_since_start)}` }))} ·
        ${esc(t({ en: `objective ${percent(saga.objective)}`, ko: `목표 ${percent(saga.objective)}` }))}</p>
      <p>${esc(t({ en: 'Orders per second', ko: '초당 주문' }))}:
        ${esc(t({ en: `${number(saga.orders_placed_per_second)} placed, ${number(saga.orders_confirmed_per_second)} confirmed`, ko: `접수 ${number(saga.orders_placed_per_second)}건, 확정 ${number(saga.orders_confirmed_per_second)}건` }))}</p>
    </div>`;
}

class OperationsView extends MallView {
  createViewModel() {
    return new OperationsViewModel(api);
  }

  intent(action, fields) {
    if (action === 'reload') this.vm.load();
    if (action === 'show-trace') location.hash = `#/operations/orders/${encodeURIComponent(fields.order_id.trim())}/trace`;
  }

  template(vm) {
    const reading = vm.reading;
    const about = reading
      ? `<p class="muted">${esc(t({ en: `Read ${when(reading.read_at)} from every instance, again every ${vm.pollMs / 1000} s while shown.`, ko: `${when(reading.read_at)}에 모든 인스턴스에서 읽음. 보는 동안 ${vm.pollMs / 1000}초마다 다시 읽습니다.` }))}
          ${esc(reading.interval_seconds === null ? t({ en: 'Rates come with the next reading.', ko: '초당 수치는 다음 읽기부터 나옵니다.' }) : t({ en: `Rates over the last ${number(reading.interval_seconds, 1)} s.`, ko: `초당 수치는 최근 ${number(reading.interval_seconds, 1)}초 기준입니다.` }))}
          ${esc(t({ en: `An instance that does not answer within ${reading.read_timeout_ms} ms is shown down.`, ko: `${reading.read_timeout_ms}ms 안에 응답하지 않는 인스턴스는 중단으로 표시합니다.` }))}</p>`
      : '';
    const down = vm.down.length
      ? `<p class="error" role="alert" data-testid="operations-down">${esc(t({ en: 'Not ready: ', ko: '정상이 아닌 서비스: ' }))}${esc(vm.down.join(', '))}</p>`
      : '';
    const head = [
      { en: 'Service', ko: '서비스' },
      { en: 'Health', ko: '상태' },
      { en: 'Requests/s', ko: '초당 요청' },
      { en: '5xx/s', ko: '초당 5xx' },
      { en: 'Error rate', ko: '오류율' },
      { en: 'p99', ko: 'p99' },
      { en: 'Outbox', ko: '아웃박스' },
      { en: 'Consumer lag', ko: '소비 지연' },
      { en: 'Dead letters', ko: '처리 실패' },
      { en: 'Breakers', ko: '차단기' },
    ]
      .map((words) => `<th scope="col">${esc(t(words))}</th>`)
      .join('');
    const table = vm.services.length
      ? `<div class="scroll"><table class="operations"><thead><tr>${head}</tr></thead><tbody>${vm.services.map(row).join('')}</tbody></table></div>`
      : '';
    return `<div class="card"><h2>${t({ en: 'Operations', ko: '운영 현황' })}</h2>
      ${errorBox(vm.error, 'reload')}${down}${about}${saga(vm)}${table}
      ${vm.loaded ? '' : `<p class="loading">${t({ en: 'Reading every service…', ko: '모든 서비스를 읽는 중…' })}</p>`}</div>`;
  }

  /**
   * The figures are drawn anew at each reading; the form to find an order's trace beside
   * them only when the language changes, so that a reading does not wipe what is typed.
   */
  render() {
    if (!this.querySelector(':scope > .live')) this.innerHTML = '<div class="live"></div><form class="card" data-action="show-trace"></form>';
    this.querySelector(':scope > .live').innerHTML = this.template(this.vm);
    const finder = this.querySelector(':scope > form');
    if (finder.dataset.lang === document.documentElement.lang) return;
    const typed = finder.elements.order_id?.value ?? '';
    finder.innerHTML = `<h3>${esc(t({ en: 'Trace of an order', ko: '주문의 트레이스' }))}</h3>
      <label>${esc(t({ en: 'Order id', ko: '주문 번호' }))} <input name="order_id" required autocomplete="off"></label>
      <div class="row"><button type="submit">${esc(t({ en: 'Show trace', ko: '트레이스 보기' }))}</button></div>`;
    finder.elements.order_id.value = typed;
    finder.dataset.lang = document.documentElement.lang;
  }
}

customElements.define('mall-operations', OperationsView);
