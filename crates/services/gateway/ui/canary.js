// <mall-canary>: canary releases for operators (the gateway runs them): each service's
// canary with its step, cohort and figures per version, followed live while it
// progresses, and promote, abort (rollback) and end.

import { CanaryViewModel } from './canary-vm.js';
import { t, when } from './i18n.js';
import { MallView, api, errorBox, esc } from './view.js';

const PHASE = {
  progressing: { en: 'In progress', ko: '진행 중' },
  promoted: { en: 'Promoted', ko: '승격됨' },
  rolled_back: { en: 'Rolled back', ko: '롤백됨' },
};
const TONE = { progressing: '', promoted: 'final-good', rolled_back: 'final-bad' };

/** The gateway's reasons, which it words in English. */
const REASON = {
  'aborted by an operator': { en: 'aborted by an operator', ko: '운영자가 중단했습니다' },
};

/** How many log entries are shown, latest first. */
const LOG_ENTRIES = 5;

function number(n) {
  return Number(n ?? 0).toLocaleString(t({ en: 'en-US', ko: 'ko-KR' }));
}

function errorRate({ requests, errors }) {
  return requests ? `${((errors / requests) * 100).toFixed(1)} %` : '—';
}

function p99({ p99_ms: ms }) {
  return ms === null || ms === undefined ? '—' : `${number(Math.round(ms))} ms`;
}

/** Requests, errors, error rate and p99 of both versions, this step and since the start. */
function figures(c) {
  const version = { stable: t({ en: 'Stable', ko: '안정 버전' }), canary: t({ en: 'Canary', ko: '카나리' }) };
  const rows = (caption, pair, key) =>
    `<tr><th colspan="5" scope="colgroup">${caption}</th></tr>` +
    ['stable', 'canary']
      .map(
        (v) => `<tr data-figures="${key}-${v}"><th scope="row">${version[v]}</th>
          <td>${esc(number(pair[v].requests))}</td><td>${esc(number(pair[v].errors))}</td>
          <td>${esc(errorRate(pair[v]))}</td><td>${esc(p99(pair[v]))}</td></tr>`,
      )
      .join('');
  return `<table class="canary-figures"><thead><tr><th></th>
      <th scope="col">${t({ en: 'Requests', ko: '요청' })}</th><th scope="col">${t({ en: 'Errors', ko: '오류' })}</th>
      <th scope="col">${t({ en: 'Error rate', ko: '오류율' })}</th><th scope="col">p99</th></tr></thead>
    <tbody>${rows(t({ en: 'This step', ko: '이번 단계' }), c.this_step, 'step')}${rows(t({ en: 'Since the start', ko: '시작 이후' }), c.totals, 'totals')}</tbody></table>`;
}

function cohort(plan) {
  const customers = plan.customers.length;
  const who = customers
    ? t({ en: `${customers} customer${customers === 1 ? '' : 's'}`, ko: `고객 ${customers}명` })
    : t({ en: 'no customers', ko: '고객 없음' });
  const roles = plan.roles.length ? `${t({ en: 'roles', ko: '역할' })} ${plan.roles.join(', ')}` : t({ en: 'no roles', ko: '역할 없음' });
  return `${t({ en: 'Cohort', ko: '대상' })}: ${esc(who)}, ${esc(roles)}`;
}

function buttons(c, busy) {
  const disabled = busy === c.service ? ' disabled' : '';
  const button = (action, label, primary = false) =>
    `<button type="button"${primary ? ' class="primary"' : ''} data-action="${action}" data-service="${esc(c.service)}"${disabled}>${label}</button>`;
  const promote = button('promote', t({ en: 'Promote', ko: '승격' }));
  const abort = button('abort', t({ en: 'Abort', ko: '중단' }), c.phase === 'progressing');
  const end = button('end', t({ en: 'End', ko: '종료' }));
  const shown = { progressing: [promote, abort], promoted: [abort, end], rolled_back: [end] }[c.phase] ?? [];
  return `<p class="row">${shown.join('')}</p>`;
}

function canary(c, busy) {
  const phase = t(PHASE[c.phase] ?? { en: c.phase, ko: c.phase });
  const steps = c.plan.steps.length;
  const step = t({ en: `step ${c.step + 1} of ${steps}`, ko: `${steps}단계 중 ${c.step + 1}단계` });
  const share = t({ en: `${c.weight_percent} % of everyone else`, ko: `나머지 고객의 ${c.weight_percent}%` });
  // A step is judged once the canary has answered `min_requests` in it, however long.
  const answered = c.this_step.canary.requests;
  const waiting =
    answered < c.plan.min_requests
      ? t({
          en: ` Judged once the canary has answered ${c.plan.min_requests} request${c.plan.min_requests === 1 ? '' : 's'} in this step (${answered} so far).`,
          ko: ` 카나리가 이번 단계에서 요청 ${c.plan.min_requests}건에 응답하면 판정합니다 (현재 ${answered}건).`,
        })
      : '';
  const timing =
    c.phase === 'progressing'
      ? `<p class="muted">${esc(t({ en: `This step for ${c.step_started_secs_ago} s of ${c.plan.interval_secs} s; started ${when(c.started_at)}.`, ko: `이번 단계 ${c.step_started_secs_ago}초 경과 (단계당 ${c.plan.interval_secs}초), ${when(c.started_at)} 시작.` }))}${esc(waiting)}</p>`
      : `<p class="muted">${esc(t({ en: `Started ${when(c.started_at)}.`, ko: `${when(c.started_at)} 시작.` }))}</p>`;
  const afterError = c.rolled_back_after_first_error_ms;
  const took = afterError === null || afterError === undefined ? null : afterError < 1 ? '< 1' : number(Math.round(afterError));
  const reason = c.reason
    ? `<p class="error" data-testid="canary-reason">${t({ en: 'Rolled back: ', ko: '롤백 사유: ' })}${esc(t(REASON[c.reason] ?? { en: c.reason, ko: c.reason }))}${
        took === null ? '' : esc(t({ en: ` (${took} ms after the canary's first error)`, ko: ` (카나리의 첫 오류 후 ${took}ms)` }))
      }</p>`
    : '';
  const log = c.log
    .slice(-LOG_ENTRIES)
    .reverse()
    .map((entry) => `<li><span class="muted">${esc(when(entry.at))}</span> ${esc(entry.what)}</li>`)
    .join('');
  return `<article class="canary" data-service="${esc(c.service)}" aria-labelledby="canary-${esc(c.service)}">
      <h3 id="canary-${esc(c.service)}">${esc(c.service)} <span class="status ${TONE[c.phase] ?? ''}" data-testid="canary-phase">${esc(phase)}</span></h3>
      <p>${esc(share)} · ${esc(step)}<br>${cohort(c.plan)}<br>
        <span class="muted">${t({ en: 'New version at', ko: '새 버전 인스턴스' })}: ${esc(c.plan.instances.join(', '))}</span></p>
      ${timing}${reason}${figures(c)}
      ${log ? `<h4>${t({ en: 'Log (latest first)', ko: '기록 (최신순)' })}</h4><ol class="history" reversed>${log}</ol>` : ''}
      ${buttons(c, busy)}</article>`;
}

class CanaryView extends MallView {
  createViewModel() {
    return new CanaryViewModel(api);
  }

  intent(action, data) {
    if (action === 'promote') this.vm.promote(data.service);
    if (action === 'abort') this.vm.abort(data.service);
    if (action === 'end') this.vm.end(data.service);
    if (action === 'reload') this.vm.load();
  }

  template(vm) {
    const none = vm.loaded && !vm.error && !vm.canaries.length
      ? `<p class="muted">${t({ en: 'No canary is running. An operator starts one with', ko: '실행 중인 카나리가 없습니다. 운영자가 다음 명령으로 시작합니다:' })} <code>mall canary start &lt;service&gt; --instance URL</code></p>`
      : '';
    return `<div class="card"><h2>${t({ en: 'Canary releases', ko: '카나리 배포' })}</h2>
      ${errorBox(vm.error, 'reload')}${none}
      ${vm.canaries.map((c) => canary(c, vm.busy)).join('')}
      <button type="button" data-action="reload">${t({ en: 'Refresh', ko: '새로고침' })}</button></div>`;
  }
}

customElements.define('mall-canary', CanaryView);
