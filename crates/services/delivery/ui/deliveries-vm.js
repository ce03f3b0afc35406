// ViewModel of the deliveries on their way, for operators to complete.

export class DeliveriesViewModel {
  constructor(api) {
    this.api = api;
    this.deliveries = [];
    this.loaded = false;
    this.error = null;
    this.onChange = () => {};
  }

  async load() {
    try {
      this.deliveries = await this.api.get('/api/deliveries');
      this.error = null;
    } catch (error) {
      this.error = error;
    }
    this.loaded = true;
    this.onChange();
  }

  async complete(orderId) {
    let failure = null;
    try {
      await this.api.post(`/api/deliveries/${orderId}/complete`);
    } catch (error) {
      failure = error;
    }
    await this.load();
    this.error = failure ?? this.error;
    this.onChange();
  }
}
