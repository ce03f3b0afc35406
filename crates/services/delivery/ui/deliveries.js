// <mall-deliveries>: deliveries on their way; an operator completes them.

import { t, when } from 'mall/i18n.js';
import { MallView, api, errorBox, esc } from 'mall/view.js';
import { DeliveriesViewModel } from './deliveries-vm.js';

class DeliveriesView extends MallView {
  createViewModel() {
    return new DeliveriesViewModel(api);
  }

  intent(action, data) {
    if (action === 'complete') this.vm.complete(data.order);
    if (action === 'reload') this.vm.load();
  }

  template(vm) {
    const rows = vm.deliveries
      .map(
        (d) => `<tr><td>${esc(d.order_id.slice(-8))}<br><span class="muted">${esc(when(d.started_at))}</span></td><td>${esc(d.address)}</td>
          <td><button type="button" data-action="complete" data-order="${esc(d.order_id)}">${t({ en: 'Delivered', ko: '배송 완료' })}</button></td></tr>`,
      )
      .join('');
    return `<div class="card"><h2>${t({ en: 'Deliveries on their way', ko: '배송 중' })}</h2>
      ${errorBox(vm.error, 'reload')}
      ${vm.loaded && !vm.deliveries.length && !vm.error ? `<p class="muted">${t({ en: 'Nothing to deliver.', ko: '배송할 것이 없습니다.' })}</p>` : ''}
      ${rows ? `<table><thead><tr><th>${t({ en: 'Order', ko: '주문' })}</th><th>${t({ en: 'Address', ko: '주소' })}</th><th></th></tr></thead><tbody>${rows}</tbody></table>` : ''}
      <button type="button" data-action="reload">${t({ en: 'Refresh', ko: '새로고침' })}</button></div>`;
  }
}

customElements.define('mall-deliveries', DeliveriesView);
