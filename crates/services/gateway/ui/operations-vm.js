// ViewModel of the operations view (admin): every service's health and figures and the
// saga's, as the gateway reads them from each instance, followed live while shown.

/** Refusals that another load would only repeat: stop following. */
const FINAL = new Set([401, 403]);

export class OperationsViewModel {
  /** Which load answers last: an older one, still under way, is not shown after it. */
  #loads = 0;

  constructor(api, { pollMs = 2000 } = {}) {
    this.api = api;
    this.pollMs = pollMs;
    /** The gateway's last answer (see GET /api/admin/operations), or null before one. */
    this.reading = null;
    this.loaded = false;
    this.error = null;
    this.onChange = () => {};
    this.timer = null;
    this.disposed = false;
  }

  get services() {
    return this.reading?.services ?? [];
  }

  get saga() {
    return this.reading?.saga ?? null;
  }

  /** Services with an instance that is not ready. */
  get down() {
    return this.services.filter((s) => !s.ready).map((s) => s.service);
  }

  /**
   * Loads the figures, and again every `pollMs` until disposed. A failed load keeps the
   * last figures on show beside the error, and the next load tries again.
   */
  async load() {
    clearTimeout(this.timer);
    const load = ++this.#loads;
    let reading = null;
    let failure = null;
    try {
      reading = await this.api.get('/api/admin/operations');
    } catch (error) {
      failure = error;
    }
    if (load !== this.#loads || this.disposed) return;
    this.reading = reading ?? this.reading;
    this.error = failure;
    this.loaded = true;
    this.onChange();
    if (!FINAL.has(failure?.status)) this.timer = setTimeout(() => this.load(), this.pollMs);
  }

  dispose() {
    this.disposed = true;
    clearTimeout(this.timer);
  }
}
