// <mall-order-form product-id>: how many, where to, and the order.

import { t } from 'mall/i18n.js';
import { session } from 'mall/session.js';
import { MallView, api, errorBox } from 'mall/view.js';
import { OrderFormViewModel } from './order-vm.js';

class OrderFormView extends MallView {
  createViewModel() {
    return new OrderFormViewModel(api, this.getAttribute('product-id'));
  }

  async intent(action, fields) {
    if (action !== 'place') return;
    const orderId = await this.vm.place(fields);
    if (orderId) location.hash = `#/orders/${orderId}`;
  }

  template(vm) {
    if (!session.signedIn) {
      return `<div class="card"><h2>${t({ en: 'Order', ko: '주문' })}</h2><p><a href="#/login">${t({ en: 'Log in to order', ko: '주문하려면 로그인하세요' })}</a></p></div>`;
    }
    return `<div class="card"><h2>${t({ en: 'Order', ko: '주문' })}</h2>
      <form data-action="place">
        <label>${t({ en: 'Quantity', ko: '수량' })}<input name="quantity" type="number" min="1" max="1000" value="1" required></label>
        <label>${t({ en: 'Delivery address', ko: '배송 주소' })}<input name="address" autocomplete="street-address" required minlength="5"></label>
        ${errorBox(vm.error)}
        <button class="primary" ${vm.busy ? 'disabled' : ''}>${t({ en: 'Place order', ko: '주문하기' })}</button>
      </form></div>`;
  }
}

customElements.define('mall-order-form', OrderFormView);
