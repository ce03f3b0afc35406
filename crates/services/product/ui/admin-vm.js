// ViewModel of the catalogue for operators: add products, receive or write off stock.

import { CatalogueViewModel } from './catalogue-vm.js';

export class ProductAdminViewModel extends CatalogueViewModel {
  constructor(api) {
    super(api);
    this.notice = null;
  }

  async add({ name, description, price, stock }) {
    await this.#act(async () => {
      const added = await this.api.post('/api/products', { name, description, price: Number(price), stock: Number(stock) });
      this.notice = { en: `Added ${added.name}.`, ko: `${added.name} 상품을 추가했습니다.` };
    });
  }

  async adjust(productId, delta) {
    await this.#act(async () => {
      const changed = await this.api.post(`/api/products/${productId}/stock`, { delta: Number(delta) });
      this.notice = { en: `${changed.name}: ${changed.stock} in stock.`, ko: `${changed.name}: 재고 ${changed.stock}개.` };
    });
  }

  async #act(work) {
    let failure = null;
    try {
      await work();
    } catch (error) {
      failure = error;
      this.notice = null;
    }
    await this.load();
    this.error = failure ?? this.error;
    this.onChange();
  }
}
