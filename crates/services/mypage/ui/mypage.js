// <mall-mypage>: every order of mine with its order, payment and delivery status.

import { money, status, t, when } from 'mall/i18n.js';
import { MallView, api, errorBox, esc } from 'mall/view.js';
import { MyPageViewModel } from './mypage-vm.js';

/** The customer's request to cancel after confirmation, while it matters. */
function cancellation(o) {
  if (o.cancellation_status === 'REQUESTED' && o.order_status !== 'CANCELLED') {
    return `<br><span class="muted cancellation">${t({ en: 'Cancellation requested', ko: '취소 요청됨' })}</span>`;
  }
  if (o.cancellation_status === 'REFUSED') {
    return `<br><span class="muted cancellation">${t({ en: 'Cancellation refused: already delivered', ko: '취소 불가: 이미 배송 완료' })}</span>`;
  }
  return '';
}

class MyPageView extends MallView {
  createViewModel() {
    return new MyPageViewModel(api);
  }

  intent(action) {
    if (action === 'reload') this.vm.load();
  }

  template(vm) {
    const rows = vm.orders
      .map(
        (o) => `<tr data-order="${esc(o.order_id)}">
          <td><a href="#/orders/${esc(o.order_id)}">${esc(o.order_id.slice(-8))}</a><br><span class="muted">${esc(when(o.updated_at))}</span></td>
          <td>${o.quantity} · ${money(o.amount)}</td>
          <td class="order-status">${esc(status(o.order_status))}${cancellation(o)}</td>
          <td>${esc(status(o.payment_status))}</td>
          <td>${esc(status(o.delivery_status))}</td>
        </tr>`,
      )
      .join('');
    return `<div class="card"><h1>${t({ en: 'My page', ko: '마이페이지' })}</h1>
      ${errorBox(vm.error, 'reload')}
      ${vm.loaded && !vm.orders.length && !vm.error ? `<p class="muted">${t({ en: 'No orders yet.', ko: '아직 주문이 없습니다.' })}</p>` : ''}
      ${rows ? `<table><thead><tr><th>${t({ en: 'Order', ko: '주문' })}</th><th>${t({ en: 'Amount', ko: '금액' })}</th><th>${t({ en: 'Order', ko: '주문 상태' })}</th><th>${t({ en: 'Payment', ko: '결제' })}</th><th>${t({ en: 'Delivery', ko: '배송' })}</th></tr></thead><tbody>${rows}</tbody></table>` : ''}
      <button type="button" data-action="reload">${t({ en: 'Refresh', ko: '새로고침' })}</button></div>`;
  }
}

customElements.define('mall-mypage', MyPageView);
