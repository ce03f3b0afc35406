// The shell: routes between views in the browser and composes each view from the web
// components the services serve (see the import map in index.html). A fragment whose
// service is down shows that, with a retry, while the rest of the page keeps working.

import { initialLang, lang, setLang, t } from './i18n.js';
import { session } from './session.js';
import { esc } from './view.js';

/** Each view: the fragments it is made of, as [module, element, attributes]. */
const ROUTES = [
  [/^#?\/?$/, () => [['product/catalogue.js', 'mall-catalogue', {}]]],
  [/^#\/login$/, () => [['auth/login.js', 'mall-login', {}]]],
  [
    /^#\/products\/([\w-]+)$/,
    ([id]) => [
      ['product/product.js', 'mall-product', { 'product-id': id }],
      ['order/order-form.js', 'mall-order-form', { 'product-id': id }],
    ],
  ],
  [/^#\/orders\/([\w-]+)$/, ([id]) => [['order/order.js', 'mall-order', { 'order-id': id }]]],
  [/^#\/mypage$/, () => [['mypage/mypage.js', 'mall-mypage', {}]]],
  [
    /^#\/admin$/,
    () => [
      ['product/admin.js', 'mall-product-admin', {}],
      ['delivery/deliveries.js', 'mall-deliveries', {}],
      ['mall/dlq.js', 'mall-dlq', {}],
      ['mall/canary.js', 'mall-canary', {}],
    ],
  ],
  [/^#\/operations$/, () => [['mall/operations.js', 'mall-operations', {}]]],
  [/^#\/operations\/orders\/([\w-]+)\/trace$/, ([id]) => [['mall/trace.js', 'mall-trace', { 'order-id': id }]]],
];

const SERVICE_OF = { product: 'product', order: 'order', mypage: 'my page', auth: 'auth', delivery: 'delivery', mall: 'gateway' };

function fragments() {
  for (const [pattern, build] of ROUTES) {
    const match = location.hash.match(pattern);
    if (match) return build(match.slice(1));
  }
  return null;
}

async function mount(slot, [module, tag, attributes]) {
  slot.innerHTML = `<p class="loading">${t({ en: 'Loading…', ko: '불러오는 중…' })}</p>`;
  try {
    await import(module);
    const element = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, value);
    slot.replaceChildren(element);
  } catch (error) {
    const service = SERVICE_OF[module.split('/')[0]];
    console.warn(`fragment ${module} failed`, error);
    slot.innerHTML = `<div class="card fragment-down" role="alert">
        <p>${esc(t({ en: `This part of the page (${service}) is unavailable right now.`, ko: `이 부분(${service})을 지금 표시할 수 없습니다.` }))}</p>
        <button type="button">${t({ en: 'Try again', ko: '다시 시도' })}</button></div>`;
    slot.querySelector('button').addEventListener('click', () => mount(slot, [`${module}?retry=${Date.now()}`, tag, attributes]));
  }
}

function route() {
  const main = document.querySelector('main');
  const parts = fragments();
  if (!parts) {
    main.innerHTML = `<p class="card">${t({ en: 'There is no such page.', ko: '없는 페이지입니다.' })} <a href="#/">${t({ en: 'To the catalogue', ko: '상품 목록으로' })}</a></p>`;
    return;
  }
  main.replaceChildren(...parts.map(() => Object.assign(document.createElement('section'), { className: 'fragment' })));
  parts.forEach((part, i) => mount(main.children[i], part));
  main.focus({ preventScroll: true });
}

function header() {
  const nav = document.querySelector('header nav');
  const signedIn = session.signedIn;
  nav.innerHTML = `
    <a href="#/">${t({ en: 'Catalogue', ko: '상품' })}</a>
    ${signedIn ? `<a href="#/mypage">${t({ en: 'My page', ko: '마이페이지' })}</a>` : ''}
    ${session.isAdmin ? `<a href="#/admin">${t({ en: 'Admin', ko: '관리' })}</a>` : ''}
    ${session.isAdmin ? `<a href="#/operations">${t({ en: 'Operations', ko: '운영 현황' })}</a>` : ''}
    ${signedIn ? `<button type="button" data-shell="logout">${t({ en: 'Log out', ko: '로그아웃' })}</button>` : `<a href="#/login">${t({ en: 'Log in', ko: '로그인' })}</a>`}
    <button type="button" data-shell="lang" lang="${lang() === 'ko' ? 'en' : 'ko'}">${lang() === 'ko' ? 'English' : '한국어'}</button>`;
}

document.documentElement.lang = initialLang();
document.querySelector('header nav').addEventListener('click', (event) => {
  const action = event.target.closest('[data-shell]')?.dataset.shell;
  if (action === 'logout') {
    session.logOut();
    location.hash = '#/';
  } else if (action === 'lang') {
    setLang(lang() === 'ko' ? 'en' : 'ko');
    header();
  }
});
document.addEventListener('mall:session', header);
window.addEventListener('hashchange', route);
header();
route();
