// <mall-catalogue>: the products, their prices and what is in stock.

import { money, t } from 'mall/i18n.js';
import { MallView, api, errorBox, esc } from 'mall/view.js';
import { CatalogueViewModel } from './catalogue-vm.js';

class CatalogueView extends MallView {
  createViewModel() {
    return new CatalogueViewModel(api);
  }

  intent(action) {
    if (action === 'reload') this.vm.load();
  }

  template(vm) {
    const items = vm.products
      .map(
        (p) => `<a class="product" href="#/products/${esc(p.id)}">
          <strong>${esc(p.name)}</strong>
          <div class="price">${money(p.price)}</div>
          <div class="${p.stock > 0 ? 'muted' : 'soldout'}">${p.stock > 0 ? t({ en: `${p.stock} in stock`, ko: `재고 ${p.stock}개` }) : t({ en: 'Sold out', ko: '품절' })}</div>
        </a>`,
      )
      .join('');
    return `<div class="card"><h1>${t({ en: 'Catalogue', ko: '상품 목록' })}</h1>
      ${errorBox(vm.error, 'reload')}
      ${vm.loaded || vm.error ? '' : `<p class="muted">${t({ en: 'Loading…', ko: '불러오는 중…' })}</p>`}
      <div class="grid">${items}</div></div>`;
  }
}

customElements.define('mall-catalogue', CatalogueView);
