// ViewModel of canary releases (admin): every service's canary, followed live while one
// progresses, and an operator's promote, abort (rollback) and end.

export class CanaryViewModel {
  /** Which load answers last: an older one, still under way, is not shown after it. */
  #loads = 0;

  constructor(api, { pollMs = 2000 } = {}) {
    this.api = api;
    this.pollMs = pollMs;
    this.canaries = [];
    this.loaded = false;
    this.error = null;
    /** The service a command is under way for, to disable its buttons meanwhile. */
    this.busy = null;
    this.onChange = () => {};
    this.timer = null;
    this.disposed = false;
  }

  /** Whether any canary is taking its steps: the list is followed while one is. */
  get progressing() {
    return this.canaries.some((c) => c.phase === 'progressing');
  }

  /** Loads every canary, and loads again every `pollMs` while one progresses. */
  async load() {
    clearTimeout(this.timer);
    const load = ++this.#loads;
    let list = null;
    let failure = null;
    try {
      list = await this.api.get('/api/admin/canaries');
    } catch (error) {
      failure = error;
    }
    // A timer's load answered after a command's (and the command's change): stale.
    if (load !== this.#loads) return;
    this.canaries = list ? list.canaries : this.canaries;
    this.error = failure;
    this.loaded = true;
    this.onChange();
    if (this.progressing && !this.disposed) this.timer = setTimeout(() => this.load(), this.pollMs);
  }

  /** The canary takes every request now. */
  async promote(service) {
    await this.#command(service, () => this.api.post(`/api/admin/canaries/${encodeURIComponent(service)}/promote`));
  }

  /** Rolls the canary back: every request goes to the stable version now. */
  async abort(service) {
    await this.#command(service, () => this.api.post(`/api/admin/canaries/${encodeURIComponent(service)}/abort`));
  }

  /** Forgets a promoted or rolled-back canary. */
  async end(service) {
    await this.#command(service, () => this.api.delete(`/api/admin/canaries/${encodeURIComponent(service)}`));
  }

  dispose() {
    this.disposed = true;
    clearTimeout(this.timer);
  }

  async #command(service, send) {
    clearTimeout(this.timer);
    this.busy = service;
    this.onChange();
    let failure = null;
    try {
      await send();
    } catch (error) {
      failure = error;
    }
    this.busy = null;
    await this.load();
    this.error = failure ?? this.error;
    this.onChange();
  }
}
