// <mall-dlq>: the dead-letter queue for operators (the gateway merges every service's).

import { DeadLettersViewModel } from './dlq-vm.js';
import { t, when } from './i18n.js';
import { MallView, api, errorBox, esc } from './view.js';

class DeadLettersView extends MallView {
  createViewModel() {
    return new DeadLettersViewModel(api);
  }

  intent(action, data) {
    if (action === 'replay') this.vm.replay(data.id);
    if (action === 'reload') this.vm.load();
  }

  template(vm) {
    const rows = vm.deadLetters
      .map(
        (d) => `<tr>
          <td>${esc(when(d.failed_at))}</td>
          <td>${esc(d.group)}<br><span class="muted">${esc(d.event.type)} · ${esc(d.topic)}</span></td>
          <td>${esc(d.error)}</td>
          <td>${d.replayed_at ? t({ en: 'replayed', ko: '재처리함' }) : `<button type="button" data-action="replay" data-id="${esc(d.id)}">${t({ en: 'Replay', ko: '재처리' })}</button>`}</td>
        </tr>`,
      )
      .join('');
    const unavailable = vm.unavailable.length
      ? `<p class="error">${esc(t({ en: 'Could not ask: ', ko: '확인하지 못한 서비스: ' }))}${esc(vm.unavailable.join(', '))}</p>`
      : '';
    return `<div class="card"><h2>${t({ en: 'Dead letters', ko: '처리 실패 이벤트' })}</h2>
      ${errorBox(vm.error, 'reload')}${unavailable}
      ${vm.replayed ? `<p class="notice" role="status">${t({ en: 'Sent back to be handled again.', ko: '다시 처리하도록 보냈습니다.' })}</p>` : ''}
      ${vm.loaded && !vm.deadLetters.length ? `<p class="muted">${t({ en: 'None: every event was handled.', ko: '없습니다: 모든 이벤트가 처리되었습니다.' })}</p>` : ''}
      ${rows ? `<table><thead><tr><th>${t({ en: 'Failed', ko: '실패 시각' })}</th><th>${t({ en: 'Service', ko: '서비스' })}</th><th>${t({ en: 'Error', ko: '오류' })}</th><th></th></tr></thead><tbody>${rows}</tbody></table>` : ''}
      <button type="button" data-action="reload">${t({ en: 'Refresh', ko: '새로고침' })}</button></div>`;
  }
}

customElements.define('mall-dlq', DeadLettersView);
