// ViewModel of signing up and logging in. `onLoggedIn` receives the bearer token when an API
// client logs in; in the shop's page the gateway keeps it in an HttpOnly cookie instead, so
// the answer carries none and `onLoggedIn` gets `undefined`.

export class LoginViewModel {
  constructor(api, onLoggedIn) {
    this.api = api;
    this.onLoggedIn = onLoggedIn;
    this.mode = 'login';
    this.busy = false;
    this.error = null;
    this.onChange = () => {};
  }

  switchTo(mode) {
    this.mode = mode;
    this.error = null;
    this.onChange();
  }

  async logIn({ email, password }) {
    await this.#busy(async () => {
      const token = await this.api.post('/api/auth/login', { email, password });
      this.onLoggedIn(token.access_token);
    });
  }

  async signUp({ name, email, password }) {
    await this.#busy(async () => {
      await this.api.post('/api/auth/signup', { name, email, password });
      const token = await this.api.post('/api/auth/login', { email, password });
      this.onLoggedIn(token.access_token);
    });
  }

  async #busy(work) {
    this.busy = true;
    this.error = null;
    this.onChange();
    try {
      await work();
    } catch (error) {
      this.error = error;
    }
    this.busy = false;
    this.onChange();
  }
}
