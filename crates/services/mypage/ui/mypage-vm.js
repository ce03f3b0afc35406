// ViewModel of my page: all my orders with their order, payment and delivery status.

export class MyPageViewModel {
  constructor(api) {
    this.api = api;
    this.orders = [];
    this.loaded = false;
    this.error = null;
    this.onChange = () => {};
  }

  async load() {
    try {
      this.orders = (await this.api.get('/api/mypage')).orders;
      this.error = null;
    } catch (error) {
      this.error = error;
    }
    this.loaded = true;
    this.onChange();
  }
}
