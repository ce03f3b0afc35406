// <mall-trace order-id="…">: one order's trace as a waterfall for admins, merged by the
// gateway from every service's recent spans: a row per span under its parent, with its
// service, name, offset and duration, and a bar where it lies in the trace's time.

import { TraceViewModel } from './trace-vm.js';
import { t } from './i18n.js';
import { MallView, api, errorBox, esc } from './view.js';

function ms(value) {
  return `${value.toLocaleString(t({ en: 'en-US', ko: 'ko-KR' }), { minimumFractionDigits: 1, maximumFractionDigits: 1 })} ms`;
}

function row({ span, depth, offsetMs, durationMs, left, width, failed }) {
  const why = failed
    ? ` <span class="soldout" data-testid="trace-failed">${esc(t({ en: 'failed', ko: '실패' }))}${span.status.message ? `: ${esc(span.status.message)}` : ''}</span>`
    : '';
  return `<tr data-service="${esc(span.service)}"${failed ? ' class="failed"' : ''}>
      <td>${esc(span.service)}</td>
      <td class="name" data-depth="${depth}">${esc(span.name)}${why}</td>
      <td class="figure">${esc(ms(offsetMs))}</td>
      <td class="figure">${esc(ms(durationMs))}</td>
      <td class="timeline"><div class="track"><div class="bar" data-left="${left}" data-width="${width}"></div></div></td>
    </tr>`;
}

class TraceView extends MallView {
  createViewModel() {
    return new TraceViewModel(api, this.getAttribute('order-id'));
  }

  intent(action) {
    if (action === 'reload') this.vm.load();
  }

  template(vm) {
    const trace = vm.trace;
    const about = trace
      ? `<p class="muted">${esc(t({ en: `Trace ${trace.trace_id}: ${vm.rows.length} spans over ${ms(vm.totalMs)}, from every service's recent spans.`, ko: `트레이스 ${trace.trace_id}: 모든 서비스의 최근 스팬에서 ${vm.rows.length}개, ${ms(vm.totalMs)}.` }))}</p>`
      : '';
    const missing = vm.unanswered.length
      ? `<p class="error" role="alert" data-testid="trace-unanswered">${esc(t({ en: 'No answer from these services, so their spans are missing: ', ko: '응답하지 않은 서비스가 있어 해당 스팬이 빠졌습니다: ' }))}${esc(vm.unanswered.join(', '))}</p>`
      : '';
    const head = [
      { en: 'Service', ko: '서비스' },
      { en: 'Span', ko: '스팬' },
      { en: 'Start', ko: '시작' },
      { en: 'Duration', ko: '소요 시간' },
      { en: 'Timeline', ko: '타임라인' },
    ]
      .map((words) => `<th scope="col">${esc(t(words))}</th>`)
      .join('');
    const table = vm.rows.length
      ? `<div class="scroll"><table class="waterfall"><thead><tr>${head}</tr></thead><tbody>${vm.rows.map(row).join('')}</tbody></table></div>`
      : '';
    return `<div class="card"><h2>${esc(t({ en: `Trace of order ${vm.orderId}`, ko: `주문 ${vm.orderId}의 트레이스` }))}</h2>
      <p><a href="#/operations">${esc(t({ en: 'Back to operations', ko: '운영 현황으로' }))}</a></p>
      ${errorBox(vm.error, 'reload')}${missing}${about}${table}
      ${vm.loaded ? '' : `<p class="loading">${esc(t({ en: 'Asking every service for its spans…', ko: '모든 서비스에서 스팬을 읽는 중…' }))}</p>`}</div>`;
  }

  /** Bars and indents are placed through the CSSOM: the page's policy allows no inline style. */
  render() {
    super.render();
    for (const bar of this.querySelectorAll('.bar')) {
      bar.style.left = `${bar.dataset.left}%`;
      bar.style.width = `${bar.dataset.width}%`;
    }
    for (const name of this.querySelectorAll('[data-depth]')) name.style.paddingLeft = `${0.35 + Number(name.dataset.depth) * 1.1}rem`;
  }
}

customElements.define('mall-trace', TraceView);
