// The login state: the bearer token in localStorage and what it says about its holder.

const KEY = 'mall.token';

function claims(token) {
  try {
    const payload = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(payload));
  } catch {
    return null;
  }
}

export const session = {
  get token() {
    const token = localStorage.getItem(KEY);
    const said = token && claims(token);
    if (!said || said.exp * 1000 <= Date.now()) return null;
    return token;
  },
  get customerId() {
    return this.token ? claims(this.token).sub : null;
  },
  get isAdmin() {
    return Boolean(this.token && claims(this.token).roles?.includes('admin'));
  },
  logIn(token) {
    localStorage.setItem(KEY, token);
    document.dispatchEvent(new CustomEvent('mall:session'));
  },
  logOut() {
    localStorage.removeItem(KEY);
    document.dispatchEvent(new CustomEvent('mall:session'));
  },
};
