// ViewModel of the dead-letter queue (admin): every service's dead letters, and replay.

export class DeadLettersViewModel {
  constructor(api) {
    this.api = api;
    this.deadLetters = [];
    this.unavailable = [];
    this.loaded = false;
    this.error = null;
    this.replayed = null;
    this.onChange = () => {};
  }

  async load() {
    try {
      const list = await this.api.get('/api/admin/dlq');
      this.deadLetters = list.dead_letters;
      this.unavailable = list.unavailable;
      this.error = null;
    } catch (error) {
      this.error = error;
    }
    this.loaded = true;
    this.onChange();
  }

  async replay(id) {
    let failure = null;
    try {
      await this.api.post(`/api/admin/dlq/${id}/replay`);
      this.replayed = id;
    } catch (error) {
      failure = error;
    }
    await this.load();
    this.error = failure ?? this.error;
    this.onChange();
  }
}
