// The View half of MVVM: a custom element that renders its ViewModel's state and turns
// clicks and form submissions into the ViewModel's commands. It holds no state of its own.

import { createApi, describe } from './api.js';
import { t } from './i18n.js';

export const api = createApi({ page: true });

/** Escapes text for HTML. */
export function esc(value) {
  return String(value ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

/** An error a person can act on, with a retry button when `retry` names an intent. */
export function errorBox(error, retry) {
  if (!error) return '';
  const button = retry ? ` <button type="button" data-action="${retry}">${t({ en: 'Try again', ko: '다시 시도' })}</button>` : '';
  return `<p class="error" role="alert">${esc(t(describe(error)))}${button}</p>`;
}

export class MallView extends HTMLElement {
  #rerender = () => this.render();

  /** The ViewModel; subclasses create it. */
  createViewModel() {
    throw new Error('a view creates its ViewModel');
  }

  /** HTML for the ViewModel's state. */
  template() {
    return '';
  }

  /** A user intent: a `data-action` clicked or a form submitted (with its fields). */
  intent() {}

  connectedCallback() {
    this.vm = this.createViewModel();
    this.vm.onChange = this.#rerender;
    this.addEventListener('click', this.#onClick);
    this.addEventListener('submit', this.#onSubmit);
    document.addEventListener('mall:lang', this.#rerender);
    this.render();
    this.vm.load?.();
  }

  disconnectedCallback() {
    document.removeEventListener('mall:lang', this.#rerender);
    this.vm.dispose?.();
  }

  render() {
    this.innerHTML = this.template(this.vm);
  }

  #onClick = (event) => {
    const target = event.target.closest('[data-action]');
    if (!target || target.tagName === 'FORM') return;
    event.preventDefault();
    this.intent(target.dataset.action, target.dataset);
  };

  #onSubmit = (event) => {
    event.preventDefault();
    const form = event.target;
    this.intent(form.dataset.action, Object.fromEntries(new FormData(form)));
  };
}
