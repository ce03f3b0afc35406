// The login state. The bearer token is in an HttpOnly cookie the gateway set at login,
// where no script (nor one injected into the page) can read it; the page keeps only what
// the gateway says about the session (whose, which roles, until when), to draw itself.

const KEY = 'mall.session';
const FROM_PAGE = { accept: 'application/json', 'x-requested-with': 'mall' };

function current() {
  try {
    const said = JSON.parse(localStorage.getItem(KEY));
    return said && said.expires_at * 1000 > Date.now() ? said : null;
  } catch {
    return null;
  }
}

function changed() {
  document.dispatchEvent(new CustomEvent('mall:session'));
}

export const session = {
  get signedIn() {
    return current() !== null;
  },
  get isAdmin() {
    return Boolean(current()?.roles?.includes('admin'));
  },
  /** After a login (the cookie is set): asks the gateway whose session it is. */
  async logIn() {
    const response = await fetch('/api/auth/session', { headers: FROM_PAGE });
    if (response.ok) localStorage.setItem(KEY, JSON.stringify(await response.json()));
    changed();
  },
  /** Forgets the session, here and the cookie at the gateway. */
  async logOut() {
    localStorage.removeItem(KEY);
    changed();
    await fetch('/api/auth/logout', { method: 'POST', headers: FROM_PAGE }).catch(() => {});
  },
};
