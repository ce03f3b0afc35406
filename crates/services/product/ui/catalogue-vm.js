// ViewModel of the catalogue: every product with its price and the stock one can order.

export class CatalogueViewModel {
  constructor(api) {
    this.api = api;
    this.products = [];
    this.loaded = false;
    this.error = null;
    this.onChange = () => {};
  }

  async load() {
    try {
      const products = [];
      let cursor = null;
      do {
        const page = await this.api.get(`/api/products?limit=200${cursor ? `&cursor=${cursor}` : ''}`);
        products.push(...page.items);
        cursor = page.next_cursor;
      } while (cursor);
      this.products = products;
      this.error = null;
    } catch (error) {
      this.error = error;
    }
    this.loaded = true;
    this.onChange();
  }
}

/** One product. */
export class ProductViewModel {
  constructor(api, productId) {
    this.api = api;
    this.productId = productId;
    this.product = null;
    this.error = null;
    this.onChange = () => {};
  }

  async load() {
    try {
      this.product = await this.api.get(`/api/products/${this.productId}`);
      this.error = null;
    } catch (error) {
      this.error = error;
    }
    this.onChange();
  }
}
