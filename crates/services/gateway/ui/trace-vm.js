// ViewModel of one order's trace (admin): the spans every service kept of the request
// that placed it, merged by the gateway, as the rows of a waterfall.
// No imports and no DOM: the tree is a pure function, tested in Node.

/**
 * The rows of a waterfall: each span under its parent, siblings by start time, with its
 * depth, its offset from the trace's start and where its bar lies (percent of the
 * trace's time). A span whose parent is not among them (not kept, or of an instance that
 * did not answer) is shown as a root rather than left out.
 */
export function waterfallRows(spans) {
  if (!spans.length) return [];
  const start = Math.min(...spans.map((s) => s.start_unix_nano));
  const end = Math.max(...spans.map((s) => s.start_unix_nano + s.duration_ms * 1e6));
  const totalMs = Math.max((end - start) / 1e6, 1e-6);
  const known = new Set(spans.map((s) => s.span_id));
  const children = new Map();
  for (const span of spans) {
    const parent = known.has(span.parent_span_id) && span.parent_span_id !== span.span_id ? span.parent_span_id : null;
    if (!children.has(parent)) children.set(parent, []);
    children.get(parent).push(span);
  }
  for (const siblings of children.values()) siblings.sort((a, b) => a.start_unix_nano - b.start_unix_nano);
  const rows = [];
  const shown = new Set();
  const stack = [...(children.get(null) ?? [])].reverse().map((span) => [span, 0]);
  while (stack.length) {
    const [span, depth] = stack.pop();
    if (shown.has(span.span_id)) continue;
    shown.add(span.span_id);
    const offsetMs = (span.start_unix_nano - start) / 1e6;
    const left = Math.min((offsetMs / totalMs) * 100, 100);
    rows.push({
      span,
      depth,
      offsetMs,
      durationMs: span.duration_ms,
      left,
      width: Math.min(Math.max((span.duration_ms / totalMs) * 100, 0.2), 100 - left),
      failed: span.status?.code === 'error',
    });
    for (const child of [...(children.get(span.span_id) ?? [])].reverse()) stack.push([child, depth + 1]);
  }
  return rows;
}

export class TraceViewModel {
  /** Which load answers last: an older one, still under way, is not shown after it. */
  #loads = 0;

  constructor(api, orderId) {
    this.api = api;
    this.orderId = orderId;
    /** The gateway's answer (see GET /api/admin/orders/{id}/trace), or null before one. */
    this.trace = null;
    this.rows = [];
    this.loaded = false;
    this.error = null;
    this.onChange = () => {};
  }

  /** The trace's length, from its first span's start to its last span's end. */
  get totalMs() {
    return this.rows.reduce((most, row) => Math.max(most, row.offsetMs + row.durationMs), 0);
  }

  get unanswered() {
    return this.trace?.unanswered ?? [];
  }

  async load() {
    const load = ++this.#loads;
    let trace = null;
    let failure = null;
    try {
      trace = await this.api.get(`/api/admin/orders/${encodeURIComponent(this.orderId)}/trace`);
    } catch (error) {
      failure = error;
    }
    if (load !== this.#loads) return;
    this.trace = trace ?? this.trace;
    this.rows = trace ? waterfallRows(trace.spans) : this.rows;
    this.error = failure;
    this.loaded = true;
    this.onChange();
  }
}
