// ViewModels of ordering: the order form, and one order followed live through its saga
// with its event history, cancel, address change and undo.

const FINAL = ['DELIVERED', 'REJECTED', 'CANCELLED'];

export class OrderFormViewModel {
  constructor(api, productId) {
    this.api = api;
    this.productId = productId;
    this.busy = false;
    this.error = null;
    this.onChange = () => {};
  }

  /** Places the order; its id, or null when it was refused (see `error`). */
  async place({ quantity, address }) {
    this.busy = true;
    this.error = null;
    this.onChange();
    try {
      const accepted = await this.api.post('/api/orders', { product_id: this.productId, quantity: Number(quantity), address });
      return accepted.order_id;
    } catch (error) {
      this.error = error;
      return null;
    } finally {
      this.busy = false;
      this.onChange();
    }
  }
}

export class OrderViewModel {
  constructor(api, orderId, { pollMs = 1000 } = {}) {
    this.api = api;
    this.orderId = orderId;
    this.pollMs = pollMs;
    this.order = null;
    this.history = [];
    this.error = null;
    this.onChange = () => {};
    this.timer = null;
  }

  get isFinal() {
    return Boolean(this.order && FINAL.includes(this.order.status));
  }

  /** A cancel or address change the delivery has yet to answer: the order is locked. */
  get requestPending() {
    return this.order?.request?.status === 'PENDING';
  }

  /** The delivery's refusal of the customer's last request, if it refused. */
  get refusedRequest() {
    return this.order?.request?.status === 'REFUSED' ? this.order.request : null;
  }

  get canCancel() {
    return Boolean(this.order && ['PENDING', 'CONFIRMED', 'DELIVERING'].includes(this.order.status) && !this.requestPending);
  }

  get canChangeAddress() {
    return Boolean(this.order && ['CONFIRMED', 'DELIVERING'].includes(this.order.status) && !this.requestPending);
  }

  /** An address change is there to undo: more changes than undos so far. */
  get canUndo() {
    const count = (type) => this.history.filter((e) => e.type === type).length;
    return this.canChangeAddress && count('AddressChanged') > count('AddressChangeUndone');
  }

  /** Loads the order and keeps following it until it is final. */
  async load() {
    clearTimeout(this.timer);
    try {
      // The order first, then its history: asked for at once, the history could be the
      // older of the two and miss the change the order already shows.
      const order = await this.api.get(`/api/orders/${this.orderId}`);
      const history = await this.api.get(`/api/orders/${this.orderId}/history`);
      this.order = order;
      this.history = history.items;
      this.error = null;
    } catch (error) {
      this.error = error;
    }
    this.onChange();
    if (!this.isFinal && !this.disposed) this.timer = setTimeout(() => this.load(), this.pollMs);
  }

  async cancel() {
    await this.#command(() => this.api.post(`/api/orders/${this.orderId}/cancel`));
  }

  async changeAddress({ address }) {
    await this.#command(() => this.api.patch(`/api/orders/${this.orderId}`, { address }));
  }

  async undo() {
    await this.#command(() => this.api.post(`/api/orders/${this.orderId}/undo`));
  }

  dispose() {
    this.disposed = true;
    clearTimeout(this.timer);
  }

  async #command(send) {
    let failure = null;
    try {
      await send();
    } catch (error) {
      failure = error;
    }
    await this.load();
    this.error = failure ?? this.error;
    this.onChange();
  }
}
