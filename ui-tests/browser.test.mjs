// The shop in a real browser (Debian's Chromium, driven by playwright-core) against a
// `mall up --split` shop: a customer signs up, orders, watches the saga, cancels; an
// operator completes a delivery, rolls a canary back, and watches the operations view
// (a frozen service shown down); with product stopped the catalogue says so while my page
// works. Screenshots of each view go to ui-tests/screenshots/.

import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { after, before, test } from 'node:test';

import { ADMIN, startShop } from './harness.mjs';

const require = createRequire(new URL('../.ci/node/package.json', import.meta.url));
const { chromium } = require('playwright-core');
const SHOTS = new URL('./screenshots/', import.meta.url).pathname;
const WAIT = { timeout: 20_000 };

let shop;
let browser;

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  shop = await startShop({ split: true, env: { MALL_UPSTREAM_TIMEOUT_MS: '1500' } });
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
});

after(async () => {
  await browser?.close();
  await shop?.stop();
});

async function page(viewport = { width: 1280, height: 900 }) {
  const context = await browser.newContext({ viewport, locale: 'en-US' });
  const tab = await context.newPage();
  tab.on('pageerror', (error) => assert.fail(`script error in the page: ${error}`));
  tab.on('console', (message) => {
    if (message.type() === 'error' && message.text().includes('Content Security Policy')) {
      assert.fail(`the shop's own page broke its policy: ${message.text()}`);
    }
  });
  await tab.goto(`${shop.url}/#/`);
  return tab;
}

async function logIn(tab, email, password) {
  await tab.goto(`${shop.url}/#/login`);
  await tab.getByLabel('Email').fill(email);
  await tab.getByLabel('Password').fill(password);
  await tab.getByRole('button', { name: 'Log in', exact: true }).click();
  await tab.getByRole('link', { name: 'My page' }).waitFor(WAIT);
}

async function stockOf(tab, name) {
  await tab.goto(`${shop.url}/#/`);
  const card = tab.locator('.product', { hasText: name });
  await card.waitFor(WAIT);
  return Number((await card.locator('.muted, .soldout').textContent()).match(/\d+/)?.[0] ?? 0);
}

test('a customer signs up, orders, sees it confirmed and on my page, cancels, and gets the stock back', async () => {
  const tab = await page();
  await tab.locator('.product').first().waitFor(WAIT);
  await tab.screenshot({ path: `${SHOTS}catalogue.png`, fullPage: true });

  await tab.getByRole('link', { name: 'Log in' }).click();
  await tab.getByRole('button', { name: 'New here? Sign up' }).click();
  await tab.getByLabel('Name').fill('Kim Minji');
  await tab.getByLabel('Email').fill(`browser-${Date.now()}@12st.test`);
  await tab.getByLabel('Password').fill('a good password');
  await tab.screenshot({ path: `${SHOTS}signup.png` });
  await tab.getByRole('button', { name: 'Create my account' }).click();
  await tab.getByRole('link', { name: 'My page' }).waitFor(WAIT);
  const readable = await tab.evaluate(() => JSON.stringify({ ...localStorage }) + document.cookie);
  assert.doesNotMatch(readable, /eyJ/, 'a script in the page can read the token');

  const name = 'Ceramic mug';
  const before = await stockOf(tab, name);
  await tab.locator('.product', { hasText: name }).click();
  await tab.getByLabel('Quantity').fill('2');
  await tab.getByLabel('Delivery address').fill('1 Teheran-ro, Gangnam-gu, Seoul');
  await tab.screenshot({ path: `${SHOTS}product.png`, fullPage: true });
  await tab.getByRole('button', { name: 'Place order' }).click();

  const status = tab.getByTestId('order-status');
  await status.filter({ hasText: 'On its way' }).waitFor(WAIT);
  await tab.locator('ol.history li', { hasText: 'DeliveryStarted' }).waitFor(WAIT);
  await tab.screenshot({ path: `${SHOTS}order.png`, fullPage: true });
  const orderUrl = tab.url();
  const orderId = orderUrl.split('/').pop();
  assert.equal(await stockOf(tab, name), before - 2);

  await tab.getByRole('link', { name: 'My page' }).click();
  const row = tab.locator(`tr[data-order="${orderId}"]`);
  await row.filter({ hasText: 'Paid' }).waitFor(WAIT);
  assert.match(await row.textContent(), /On its way/);
  await tab.screenshot({ path: `${SHOTS}mypage.png`, fullPage: true });

  await tab.goto(orderUrl);
  await tab.getByRole('button', { name: 'Cancel order' }).click();
  await status.filter({ hasText: 'Cancelled' }).waitFor(WAIT);
  for (let i = 0; i < 50 && (await stockOf(tab, name)) !== before; i++) await tab.waitForTimeout(200);
  assert.equal(await stockOf(tab, name), before, 'the stock is back');

  await tab.getByRole('button', { name: 'Log out' }).click();
  await tab.getByRole('link', { name: 'Log in' }).waitFor(WAIT);
  await tab.waitForFunction(() => fetch('/api/mypage').then((r) => r.status === 401), null, WAIT);

  await tab.getByRole('button', { name: '한국어' }).click();
  await tab.getByRole('heading', { name: '상품 목록' }).waitFor(WAIT);
  await tab.screenshot({ path: `${SHOTS}catalogue-ko.png`, fullPage: true });
  await tab.context().close();
});

test('an operator completes a delivery and the customer sees it delivered', async () => {
  const customer = await page({ width: 390, height: 844 });
  await logIn(customer, 'demo@12st.mall', demoPassword());
  await customer.locator('.product').first().click();
  await customer.getByLabel('Delivery address').fill('7 Jongno, Seoul');
  await customer.getByRole('button', { name: 'Place order' }).click();
  const status = customer.getByTestId('order-status');
  await status.filter({ hasText: 'On its way' }).waitFor(WAIT);
  const orderId = customer.url().split('/').pop();
  await customer.screenshot({ path: `${SHOTS}order-mobile.png`, fullPage: true });

  const operator = await page();
  await logIn(operator, ADMIN.email, ADMIN.password);
  await operator.getByRole('link', { name: 'Admin' }).click();
  await operator.getByRole('heading', { name: 'Dead letters' }).waitFor(WAIT);
  const delivery = operator.locator('tr', { hasText: orderId.slice(-8) }).getByRole('button', { name: 'Delivered' });
  await delivery.waitFor(WAIT);
  await operator.screenshot({ path: `${SHOTS}admin.png`, fullPage: true });
  await delivery.press('Enter');
  await operator.locator('tr', { hasText: orderId.slice(-8) }).waitFor({ state: 'detached', ...WAIT });

  await status.filter({ hasText: 'Delivered' }).waitFor(WAIT);
  assert.equal(await customer.getByRole('button', { name: 'Cancel order' }).count(), 0);
  await customer.context().close();
  await operator.context().close();
});

test('once on its way a cancel waits for the delivery, and the customer sees it asked then granted', async () => {
  const tab = await page();
  await logIn(tab, 'demo@12st.mall', demoPassword());
  await tab.locator('.product').first().click();
  await tab.getByLabel('Delivery address').fill('9 Sejong-daero, Seoul');
  await tab.getByRole('button', { name: 'Place order' }).click();
  const status = tab.getByTestId('order-status');
  await status.filter({ hasText: 'On its way' }).waitFor(WAIT);
  // Delivery cannot answer while stopped: the request stays visibly pending.
  shop.signal('delivery', 'SIGSTOP');
  try {
    await tab.getByRole('button', { name: 'Cancel order' }).click();
    await tab.getByTestId('order-request').filter({ hasText: 'Cancellation requested' }).waitFor(WAIT);
    assert.match(await status.textContent(), /On its way/);
    assert.equal(await tab.getByRole('button', { name: 'Cancel order' }).count(), 0, 'one request at a time');
    await tab.screenshot({ path: `${SHOTS}cancel-requested.png`, fullPage: true });
  } finally {
    shop.signal('delivery', 'SIGCONT');
  }
  await status.filter({ hasText: 'Cancelled' }).waitFor(WAIT);
  assert.equal(await tab.getByTestId('order-request').count(), 0, 'granted: nothing pending');
  await tab.context().close();
});

test('with product stopped the catalogue says so, and my page still works', async () => {
  const tab = await page();
  await logIn(tab, 'demo@12st.mall', demoPassword());
  shop.signal('product', 'SIGSTOP');
  try {
    await tab.goto(`${shop.url}/#/`);
    await tab.reload();
    const down = tab.getByRole('alert');
    await down.waitFor(WAIT);
    assert.match(await down.textContent(), /unavailable/);
    await tab.screenshot({ path: `${SHOTS}product-down.png`, fullPage: true });

    await tab.getByRole('link', { name: 'My page' }).click();
    await tab.getByRole('heading', { name: 'My page' }).waitFor(WAIT);
    await tab.locator('tbody tr').first().waitFor(WAIT);
    await tab.screenshot({ path: `${SHOTS}mypage-product-down.png`, fullPage: true });
  } finally {
    shop.signal('product', 'SIGCONT');
  }
  await tab.goto(`${shop.url}/#/`);
  await tab.getByRole('button', { name: 'Try again' }).first().click().catch(() => {});
  await tab.locator('.product').first().waitFor(WAIT);
  await tab.context().close();
});

test('a script injected into the page does not run, and no other site can frame the shop', async () => {
  const context = await browser.newContext({ locale: 'en-US' });
  const tab = await context.newPage();
  await tab.goto(`${shop.url}/#/`);
  await tab.locator('.product').first().waitFor(WAIT);
  await tab.evaluate(() => {
    const injected = document.createElement('script');
    injected.textContent = 'window.stolen = localStorage.length + 1;';
    document.head.append(injected);
  });
  assert.equal(await tab.evaluate(() => window.stolen), undefined, 'the inline script ran');

  await tab.setContent(`<iframe src="${shop.url}/"></iframe>`);
  const framed = tab.frames().find((frame) => frame !== tab.mainFrame());
  await tab.waitForTimeout(500);
  const framedTitle = await framed?.evaluate(() => document.title).catch(() => '');
  assert.notEqual(framedTitle, '12st mall', 'the shop rendered in a frame');
  await context.close();
});

test('an operator sees a running canary on the admin page, rolls it back and ends it', async () => {
  // Started through the admin API, as `mall canary start` does: its instance is
  // unreachable and it takes no one (no cohort, 0 %), so the shop keeps working.
  const login = await fetch(`${shop.url}/api/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(ADMIN),
  });
  const token = (await login.json()).access_token;
  assert.ok(token, 'an admin token');
  const canaries = (method, path = '', body) =>
    fetch(`${shop.url}/api/admin/canaries${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: body && JSON.stringify(body),
    });
  const started = await canaries('PUT', '/order', { instances: ['http://127.0.0.1:1'], steps: [0, 100], interval_secs: 3600 });
  assert.equal(started.status, 201, await started.text());

  const operator = await page();
  try {
    await logIn(operator, ADMIN.email, ADMIN.password);
    await operator.getByRole('link', { name: 'Admin' }).click();
    await operator.getByRole('heading', { name: 'Canary releases' }).waitFor(WAIT);
    const card = operator.locator('mall-canary article[data-service="order"]');
    await card.waitFor(WAIT);
    const phase = card.getByTestId('canary-phase');
    assert.equal(await phase.textContent(), 'In progress');
    const text = await card.textContent();
    assert.match(text, /0 % of everyone else · step 1 of 2/);
    assert.match(text, /Cohort: no customers, no roles/);
    assert.match(text, /Judged once the canary has answered 20 requests in this step \(0 so far\)/);
    const cells = (row) => card.locator(`[data-figures="${row}"] > *`).allTextContents();
    assert.deepEqual(await cells('totals-canary'), ['Canary', '0', '0', '—', '—'], 'nobody met the canary yet');
    assert.deepEqual((await cells('step-stable')).slice(0, 1), ['Stable']);
    assert.match(await card.locator('ol.history li').first().textContent(), /started: http:\/\/127\.0\.0\.1:1/);
    assert.equal(await card.getByRole('button', { name: 'Promote' }).count(), 1);
    assert.equal(await card.getByRole('button', { name: 'End', exact: true }).count(), 0, 'a progressing canary cannot be ended');
    await operator.screenshot({ path: `${SHOTS}admin-canary.png`, fullPage: true });

    await card.getByRole('button', { name: 'Abort' }).click();
    await phase.filter({ hasText: 'Rolled back' }).waitFor(WAIT);
    assert.match(await card.getByTestId('canary-reason').textContent(), /Rolled back: aborted by an operator/);
    assert.match(await card.locator('ol.history li').first().textContent(), /rolled back: aborted by an operator/);
    assert.match(await card.textContent(), /0 % of everyone else/);
    assert.equal(await card.getByRole('button', { name: 'Abort' }).count(), 0);
    assert.equal(await card.getByRole('button', { name: 'Promote' }).count(), 0);
    const told = await (await canaries('GET', '/order')).json();
    assert.equal(told.phase, 'rolled_back', 'the gateway rolled it back');
    await operator.screenshot({ path: `${SHOTS}admin-canary-rolled-back.png`, fullPage: true });

    await operator.getByRole('button', { name: '한국어' }).click();
    await operator.getByRole('heading', { name: '카나리 배포' }).waitFor(WAIT);
    assert.equal(await phase.textContent(), '롤백됨');
    assert.match(await card.getByTestId('canary-reason').textContent(), /운영자가 중단했습니다/);
    await card.getByRole('button', { name: '종료' }).click();
    await card.waitFor({ state: 'detached', ...WAIT });
    await operator.getByText('실행 중인 카나리가 없습니다').waitFor(WAIT);
    assert.deepEqual((await (await canaries('GET')).json()).canaries, []);
  } finally {
    await canaries('POST', '/order/abort');
    await canaries('DELETE', '/order');
    await operator.context().close();
  }
});

test('an operator watches every service and the saga live on the operations view, and sees a frozen one down', async () => {
  // An order of the demo customer's, so that the saga has figures to show.
  const login = await fetch(`${shop.url}/api/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email: 'demo@12st.mall', password: demoPassword() }),
  });
  const token = (await login.json()).access_token;
  const products = (await (await fetch(`${shop.url}/api/products`)).json()).items;
  const placed = await fetch(`${shop.url}/api/orders`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ product_id: products.find((p) => p.stock > 0).id, quantity: 1, address: '1 Teheran-ro, Seoul' }),
  });
  assert.equal(placed.status, 202);

  const operator = await page();
  let readings = 0;
  operator.on('request', (request) => {
    if (request.url().endsWith('/api/admin/operations')) readings++;
  });
  try {
    await logIn(operator, ADMIN.email, ADMIN.password);
    await operator.getByRole('link', { name: 'Operations' }).click();
    await operator.getByRole('heading', { name: 'Operations' }).waitFor(WAIT);
    const services = ['gateway', 'auth', 'product', 'order', 'payment', 'delivery', 'mypage'];
    for (const service of services) {
      const row = operator.locator(`mall-operations tr[data-service="${service}"]`);
      await row.waitFor(WAIT);
      assert.equal(await row.getByTestId('operations-health').textContent(), 'Ready', service);
    }
    // Live: the next reading brings rates, without a click.
    await operator.getByText(/Rates over the last [\d.]+ s/).waitFor(WAIT);
    const saga = operator.getByTestId('operations-saga');
    assert.match(await saga.getByRole('heading').textContent(), /Orders confirmed within 2\.5 s/);
    assert.match(await saga.textContent(), /\d+\.\d % since order started/);
    assert.match(await saga.textContent(), /objective 99\.0 %/);
    const cells = await operator.locator('mall-operations tr[data-service="order"] > *').allTextContents();
    assert.equal(cells.length, 10);
    assert.match(cells[2], /^[\d.,]+$/, 'requests per second');
    assert.match(cells[9], /product: closed/);
    assert.match(await operator.locator('mall-operations tr[data-service="delivery"] > *').nth(7).textContent(), /delivery: 0/);
    await operator.screenshot({ path: `${SHOTS}operations.png`, fullPage: true });

    // Frozen, payment is shown down with why, the others still ready.
    shop.signal('payment', 'SIGSTOP');
    try {
      const payment = operator.locator('mall-operations tr[data-service="payment"]');
      await payment.getByTestId('operations-health').filter({ hasText: 'Down' }).waitFor(WAIT);
      assert.match(await payment.getByTestId('operations-reason').textContent(), /no answer within 1000 ms/);
      assert.match(await operator.getByTestId('operations-down').textContent(), /Not ready: payment/);
      assert.equal(await operator.locator('mall-operations tr[data-service="order"]').getByTestId('operations-health').textContent(), 'Ready');
      await operator.screenshot({ path: `${SHOTS}operations-payment-down.png`, fullPage: true });
    } finally {
      shop.signal('payment', 'SIGCONT');
    }
    await operator.locator('mall-operations tr[data-service="payment"]').getByTestId('operations-health').filter({ hasText: 'Ready' }).waitFor(WAIT);

    await operator.getByRole('button', { name: '한국어' }).click();
    await operator.getByRole('heading', { name: '운영 현황' }).waitFor(WAIT);
    assert.equal(await operator.locator('mall-operations tr[data-service="order"]').getByTestId('operations-health').textContent(), '정상');
    assert.match(await operator.getByTestId('operations-saga').textContent(), /2\.5초 안에 확정된 주문/);
    await operator.screenshot({ path: `${SHOTS}operations-ko.png`, fullPage: true });

    // Left, the view stops reading.
    await operator.getByRole('link', { name: '상품' }).click();
    await operator.locator('.product').first().waitFor(WAIT);
    await operator.waitForTimeout(500);
    const atLeaving = readings;
    await operator.waitForTimeout(2500);
    assert.equal(readings, atLeaving, 'still reading after the view was left');
  } finally {
    await operator.context().close();
  }
});

test('an operator finds an order\'s trace from the operations view and reads it as a waterfall of every service', async () => {
  const login = await fetch(`${shop.url}/api/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email: 'demo@12st.mall', password: demoPassword() }),
  });
  const token = (await login.json()).access_token;
  const products = (await (await fetch(`${shop.url}/api/products`)).json()).items;
  const placed = await fetch(`${shop.url}/api/orders`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ product_id: products.find((p) => p.stock > 0).id, quantity: 1, address: '1 Teheran-ro, Seoul' }),
  });
  assert.equal(placed.status, 202);
  const orderId = (await placed.json()).order_id;

  const operator = await page();
  try {
    await logIn(operator, ADMIN.email, ADMIN.password);
    await operator.getByRole('link', { name: 'Operations' }).click();
    await operator.locator('mall-operations tr[data-service="order"]').waitFor(WAIT);
    // What is typed outlives the view's next reading.
    await operator.getByLabel('Order id').fill(orderId);
    await operator.getByText(/Rates over the last [\d.]+ s/).waitFor(WAIT);
    assert.equal(await operator.getByLabel('Order id').inputValue(), orderId);
    await operator.getByRole('button', { name: 'Show trace' }).click();
    await operator.getByRole('heading', { name: `Trace of order ${orderId}` }).waitFor(WAIT);
    assert.ok(operator.url().endsWith(`#/operations/orders/${orderId}/trace`));

    const first = operator.locator('mall-trace tbody tr').first();
    await first.waitFor(WAIT);
    const cells = await first.locator('td').allTextContents();
    assert.equal(cells[0], 'gateway');
    assert.equal(cells[1], 'POST /api/orders');
    assert.equal(cells[2], '0.0 ms');
    for (const service of ['gateway', 'order', 'product', 'payment', 'delivery']) {
      assert.ok((await operator.locator(`mall-trace tr[data-service="${service}"]`).count()) > 0, service);
    }
    // Placed through the page's policy: each bar has its place and size, children indented.
    const root = await first.locator('.bar').evaluate((bar) => [bar.style.left, bar.style.width]);
    assert.deepEqual(root[0], '0%');
    assert.match(root[1], /^[\d.]+%$/);
    const indents = await operator.locator('mall-trace td.name').evaluateAll((cells) => cells.map((c) => parseFloat(c.style.paddingLeft)));
    assert.ok(indents.slice(1).every((indent) => indent > indents[0]), `${indents}`);
    await operator.screenshot({ path: `${SHOTS}trace.png`, fullPage: true });

    await operator.getByRole('button', { name: '한국어' }).click();
    await operator.getByRole('heading', { name: `주문 ${orderId}의 트레이스` }).waitFor(WAIT);
    await operator.getByRole('columnheader', { name: '소요 시간' }).waitFor(WAIT);
  } finally {
    await operator.context().close();
  }
});

function demoPassword() {
  return JSON.parse(require('node:fs').readFileSync(`${shop.dir}/demo-customer.json`, 'utf8')).password;
}
