// <mall-order order-id>: the order's status live as the saga moves, its history with
// what each event changed, and cancel, address change and undo (once confirmed, requests
// the delivery answers: shown while pending, and why when refused).

import { money, status, t, when } from 'mall/i18n.js';
import { MallView, api, errorBox, esc } from 'mall/view.js';
import { OrderViewModel } from './order-vm.js';

const GOOD = ['DELIVERING', 'DELIVERED', 'CONFIRMED'];

const REQUEST = {
  CANCEL: { en: 'Cancellation', ko: '주문 취소' },
  CHANGE_ADDRESS: { en: 'Address change', ko: '주소 변경' },
  UNDO_ADDRESS_CHANGE: { en: 'Undo of the address change', ko: '주소 변경 되돌리기' },
};

/** Delivery's reasons, which it words in English. */
const REFUSAL = {
  'the parcel was already delivered': { en: 'the parcel was already delivered', ko: '이미 배송이 완료되었습니다' },
  'the delivery was cancelled': { en: 'the delivery was cancelled', ko: '배송이 취소되었습니다' },
};

/** A changed field's value as text: a request is an object, shown by its fields. */
function shown(value) {
  if (value === null || value === undefined) return '—';
  return typeof value === 'object' ? Object.values(value).join(' ') : value;
}

/** Where the customer's request to delivery stands, in words. */
function request(r) {
  if (!r) return '';
  const what = t(REQUEST[r.kind] ?? { en: r.kind, ko: r.kind });
  if (r.status === 'PENDING') {
    return `<p class="request" data-testid="order-request" aria-live="polite">${esc(what)} ${t({ en: 'requested: waiting for the delivery’s answer…', ko: '요청됨: 배송 확인을 기다리는 중…' })}</p>`;
  }
  const reason = t(REFUSAL[r.reason] ?? { en: r.reason ?? '', ko: r.reason ?? '' });
  return `<p class="request error" data-testid="order-request" aria-live="polite">${esc(what)} ${t({ en: 'refused', ko: '불가' })}: ${esc(reason)}</p>`;
}

class OrderView extends MallView {
  createViewModel() {
    return new OrderViewModel(api, this.getAttribute('order-id'));
  }

  intent(action, fields) {
    if (action === 'cancel') this.vm.cancel();
    if (action === 'undo') this.vm.undo();
    if (action === 'address') this.vm.changeAddress(fields);
    if (action === 'reload') this.vm.load();
  }

  template(vm) {
    const o = vm.order;
    if (!o) return `<div class="card">${errorBox(vm.error, 'reload')}<p class="muted">${t({ en: 'Loading…', ko: '불러오는 중…' })}</p></div>`;
    const tone = GOOD.includes(o.status) ? 'final-good' : ['REJECTED', 'CANCELLED'].includes(o.status) ? 'final-bad' : '';
    const events = vm.history
      .map(
        (e) => `<li><strong>${esc(e.type)}</strong> <span class="muted">${esc(when(e.recorded_at))}</span>
          ${e.changes.length ? `<ul>${e.changes.map((c) => `<li>${esc(c.field)}: ${esc(shown(c.from))} → ${esc(shown(c.to))}</li>`).join('')}</ul>` : ''}</li>`,
      )
      .join('');
    return `<div class="card"><h1>${t({ en: 'Order', ko: '주문' })}</h1>
      <p><span class="status ${tone}" data-testid="order-status" aria-live="polite">${esc(status(o.status))}</span>
        ${o.reason ? `<span class="muted">${esc(o.reason)}</span>` : ''}</p>
      <p>${t({ en: 'Quantity', ko: '수량' })}: ${o.quantity} · ${money(o.amount)}</p>
      <p>${t({ en: 'Delivery address', ko: '배송 주소' })}: ${esc(o.address)}</p>
      ${request(o.request)}
      ${errorBox(vm.error, 'reload')}
      <div class="row">
        ${vm.canCancel ? `<button type="button" data-action="cancel">${t({ en: 'Cancel order', ko: '주문 취소' })}</button>` : ''}
        ${vm.canUndo ? `<button type="button" data-action="undo">${t({ en: 'Undo last change', ko: '마지막 변경 되돌리기' })}</button>` : ''}
      </div>
      ${vm.canChangeAddress ? `<form data-action="address" class="row"><label>${t({ en: 'New address', ko: '새 주소' })}<input name="address" required minlength="5"></label><button>${t({ en: 'Change address', ko: '주소 변경' })}</button></form>` : ''}
      <h2>${t({ en: 'History', ko: '이력' })}</h2><ol class="history">${events}</ol>
      <p><a href="#/mypage">${t({ en: 'All my orders', ko: '내 주문 전체' })}</a></p></div>`;
  }
}

customElements.define('mall-order', OrderView);
