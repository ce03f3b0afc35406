// <mall-product-admin>: products and stock, for operators.

import { money, t } from 'mall/i18n.js';
import { MallView, api, errorBox, esc } from 'mall/view.js';
import { ProductAdminViewModel } from './admin-vm.js';

class ProductAdminView extends MallView {
  createViewModel() {
    return new ProductAdminViewModel(api);
  }

  intent(action, fields) {
    if (action === 'add') this.vm.add(fields);
    if (action === 'adjust') this.vm.adjust(fields.product, fields.delta);
    if (action === 'reload') this.vm.load();
  }

  template(vm) {
    const rows = vm.products
      .map(
        (p) => `<tr><td>${esc(p.name)}</td><td>${money(p.price)}</td><td>${p.stock}</td>
          <td><form data-action="adjust" class="row"><input type="hidden" name="product" value="${esc(p.id)}">
            <input name="delta" type="number" required aria-label="${t({ en: `Change stock of ${p.name}`, ko: `${p.name} 재고 변경` })}">
            <button>${t({ en: 'Apply', ko: '적용' })}</button></form></td></tr>`,
      )
      .join('');
    return `<div class="card"><h2>${t({ en: 'Products and stock', ko: '상품과 재고' })}</h2>
      ${errorBox(vm.error, 'reload')}
      ${vm.notice ? `<p class="notice" role="status">${esc(t(vm.notice))}</p>` : ''}
      <table><thead><tr><th>${t({ en: 'Product', ko: '상품' })}</th><th>${t({ en: 'Price', ko: '가격' })}</th><th>${t({ en: 'Stock', ko: '재고' })}</th><th>${t({ en: 'Receive (+) or write off (−)', ko: '입고(+) 또는 폐기(−)' })}</th></tr></thead><tbody>${rows}</tbody></table>
      <h3>${t({ en: 'Add a product', ko: '상품 추가' })}</h3>
      <form data-action="add">
        <label>${t({ en: 'Name', ko: '이름' })}<input name="name" required></label>
        <label>${t({ en: 'Description', ko: '설명' })}<input name="description"></label>
        <label>${t({ en: 'Price (KRW)', ko: '가격(원)' })}<input name="price" type="number" min="1" required></label>
        <label>${t({ en: 'Stock', ko: '재고' })}<input name="stock" type="number" min="0" value="0" required></label>
        <button class="primary">${t({ en: 'Add', ko: '추가' })}</button>
      </form></div>`;
  }
}

customElements.define('mall-product-admin', ProductAdminView);
