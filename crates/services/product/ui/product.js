// <mall-product product-id>: one product in detail.

import { money, t } from 'mall/i18n.js';
import { MallView, api, errorBox, esc } from 'mall/view.js';
import { ProductViewModel } from './catalogue-vm.js';

class ProductView extends MallView {
  createViewModel() {
    return new ProductViewModel(api, this.getAttribute('product-id'));
  }

  intent(action) {
    if (action === 'reload') this.vm.load();
  }

  template(vm) {
    const p = vm.product;
    return `<div class="card">${errorBox(vm.error, 'reload')}
      ${p ? `<h1>${esc(p.name)}</h1><p>${esc(p.description)}</p>
        <p class="price">${money(p.price)}</p>
        <p class="${p.stock > 0 ? 'muted' : 'soldout'}">${p.stock > 0 ? t({ en: `${p.stock} in stock`, ko: `재고 ${p.stock}개` }) : t({ en: 'Sold out', ko: '품절' })}</p>` : ''}
      <p><a href="#/">${t({ en: '← All products', ko: '← 전체 상품' })}</a></p></div>`;
  }
}

customElements.define('mall-product', ProductView);
