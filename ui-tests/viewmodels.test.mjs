// The ViewModels without a DOM, against a real shop: each command and what the state
// becomes, errors included.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { ProblemError, createApi, describe } from '../crates/services/gateway/ui/api.js';
import { DeadLettersViewModel } from '../crates/services/gateway/ui/dlq-vm.js';
import { CanaryViewModel } from '../crates/services/gateway/ui/canary-vm.js';
import { OperationsViewModel } from '../crates/services/gateway/ui/operations-vm.js';
import { TraceViewModel, waterfallRows } from '../crates/services/gateway/ui/trace-vm.js';
import { LoginViewModel } from '../crates/services/auth/ui/login-vm.js';
import { CatalogueViewModel, ProductViewModel } from '../crates/services/product/ui/catalogue-vm.js';
import { ProductAdminViewModel } from '../crates/services/product/ui/admin-vm.js';
import { OrderFormViewModel, OrderViewModel } from '../crates/services/order/ui/order-vm.js';
import { MyPageViewModel } from '../crates/services/mypage/ui/mypage-vm.js';
import { DeliveriesViewModel } from '../crates/services/delivery/ui/deliveries-vm.js';
import { ADMIN, eventually, startShop } from './harness.mjs';

let shop;
let customer;
let admin;
let adminToken;

async function logIn(email, password) {
  let token = null;
  const vm = new LoginViewModel(createApi({ base: shop.url }), (t) => (token = t));
  await vm.logIn({ email, password });
  assert.equal(vm.error, null);
  return token;
}

before(async () => {
  shop = await startShop();
  let token = null;
  const signup = new LoginViewModel(createApi({ base: shop.url }), (t) => (token = t));
  await signup.signUp({ name: '김민지', email: `vm-${Date.now()}@12st.test`, password: 'a good password' });
  assert.equal(signup.error, null);
  assert.ok(token, 'signing up logs in');
  customer = createApi({ base: shop.url, token: () => token });
  adminToken = await logIn(ADMIN.email, ADMIN.password);
  admin = createApi({ base: shop.url, token: () => adminToken });
});

after(async () => shop?.stop());

test('a wrong password is an error in plain words, and no token', async () => {
  let token = null;
  const vm = new LoginViewModel(createApi({ base: shop.url }), (t) => (token = t));
  await vm.logIn({ email: ADMIN.email, password: 'not it at all' });
  assert.equal(token, null);
  assert.ok(vm.error instanceof ProblemError);
  assert.equal(vm.error.status, 401);
  assert.match(describe(vm.error).en, /log in/);
  assert.equal(vm.busy, false);
});

test('the catalogue lists products with price and stock', async () => {
  const vm = new CatalogueViewModel(customer);
  let changes = 0;
  vm.onChange = () => changes++;
  await vm.load();
  assert.equal(vm.error, null);
  assert.ok(vm.products.length >= 3, 'the demo catalogue');
  for (const p of vm.products) assert.ok(Number.isInteger(p.price) && Number.isInteger(p.stock));
  assert.ok(changes >= 1);
});

test('an order is placed, followed to DELIVERING, cancelled, and shows on my page', async () => {
  const admins = new ProductAdminViewModel(admin);
  await admins.add({ name: 'VM test shoes', description: '', price: '12000', stock: '5' });
  assert.equal(admins.error, null);
  const product = admins.products.find((p) => p.name === 'VM test shoes');
  assert.equal(product.stock, 5);

  const form = new OrderFormViewModel(customer, product.id);
  assert.equal(await form.place({ quantity: '0', address: '1 Teheran-ro, Seoul' }), null);
  assert.equal(form.error.status, 422);
  assert.match(describe(form.error).en, /check what you entered/);
  const orderId = await form.place({ quantity: '2', address: '1 Teheran-ro, Seoul' });
  assert.ok(orderId);

  const order = new OrderViewModel(customer, orderId, { pollMs: 100 });
  await order.load();
  await eventually(() => order.order?.status, (s) => s === 'DELIVERING');
  assert.deepEqual(order.history.map((e) => e.type), ['OrderPlaced', 'OrderConfirmed', 'DeliveryStarted']);
  assert.equal(order.canUndo, false);
  // Once confirmed, each change is a request the delivery answers; the order follows.
  await order.changeAddress({ address: '2 Haeundae-ro, Busan' });
  assert.equal(order.error, null);
  await eventually(() => order.order?.address, (a) => a === '2 Haeundae-ro, Busan');
  assert.equal(order.requestPending, false);
  assert.equal(order.canUndo, true);
  await order.undo();
  await eventually(() => order.order?.address, (a) => a === '1 Teheran-ro, Seoul');
  await order.undo();
  assert.equal(order.error.status, 409, 'nothing left to undo');
  assert.match(describe(order.error).en, /not possible right now/);
  await order.cancel();
  assert.equal(order.error, null);
  await eventually(() => order.order?.status, (s) => s === 'CANCELLED');
  assert.equal(order.order.request, undefined, 'granted, so nothing is pending');
  assert.equal(order.isFinal, true);
  order.dispose();

  const item = new ProductViewModel(customer, product.id);
  await eventually(async () => (await item.load(), item.product.stock), (stock) => stock === 5);

  const mine = new MyPageViewModel(customer);
  await eventually(
    async () => (await mine.load(), mine.orders.find((o) => o.order_id === orderId)),
    (o) => o?.order_status === 'CANCELLED' && o.payment_status === 'REFUNDED',
  );
});

test('an operator completes a delivery and the order becomes DELIVERED', async () => {
  const catalogue = new CatalogueViewModel(customer);
  await catalogue.load();
  const product = catalogue.products.find((p) => p.stock > 0);
  const orderId = await new OrderFormViewModel(customer, product.id).place({ quantity: '1', address: '3 Jongno, Seoul' });
  const order = new OrderViewModel(customer, orderId, { pollMs: 100 });
  await order.load();
  await eventually(() => order.order?.status, (s) => s === 'DELIVERING');

  const deliveries = new DeliveriesViewModel(admin);
  await eventually(async () => (await deliveries.load(), deliveries.deliveries), (list) => list.some((d) => d.order_id === orderId));
  await deliveries.complete(orderId);
  assert.equal(deliveries.error, null);
  assert.ok(!deliveries.deliveries.some((d) => d.order_id === orderId));
  await eventually(() => order.order?.status, (s) => s === 'DELIVERED');
  order.dispose();

  const forbidden = new DeliveriesViewModel(customer);
  await forbidden.load();
  assert.equal(forbidden.error.status, 403);
  assert.match(describe(forbidden.error).ko, /관리자/);
});

test('the dead letters are for operators and say when every service answered', async () => {
  const vm = new DeadLettersViewModel(admin);
  await vm.load();
  assert.equal(vm.error, null);
  assert.deepEqual(vm.unavailable, []);
  assert.ok(Array.isArray(vm.deadLetters));
  await vm.replay('01000000-0000-7000-8000-000000000000');
  assert.equal(vm.error.status, 404);
  const customers = new DeadLettersViewModel(customer);
  await customers.load();
  assert.equal(customers.error.status, 403);
});

/** Starts a canary of `service` through the admin API, as `mall canary start` does. */
async function startCanary(service, plan) {
  const response = await fetch(`${shop.url}/api/admin/canaries/${service}`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
    body: JSON.stringify(plan),
  });
  assert.equal(response.status, 201, await response.clone().text());
  return response.json();
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

test('an operator follows a canary while it progresses, rolls it back and ends it', async () => {
  // The canary's instance is unreachable, and takes no one (no cohort, 0 %): nothing fails.
  const plan = { instances: ['http://127.0.0.1:1'], steps: [0, 100], interval_secs: 3600 };
  const vm = new CanaryViewModel(admin, { pollMs: 100 });
  let changes = 0;
  vm.onChange = () => changes++;
  try {
    await vm.load();
    assert.equal(vm.error, null);
    assert.equal(vm.loaded, true);
    assert.deepEqual(vm.canaries, []);
    assert.equal(vm.progressing, false);

    await startCanary('order', plan);
    await vm.load();
    assert.equal(vm.error, null);
    assert.equal(vm.canaries.length, 1);
    const [order] = vm.canaries;
    assert.equal(order.service, 'order');
    assert.equal(order.phase, 'progressing');
    assert.equal(order.weight_percent, 0);
    assert.equal(order.step, 0);
    assert.deepEqual(order.plan.steps, [0, 100]);
    assert.deepEqual(order.plan.instances, ['http://127.0.0.1:1']);
    assert.equal(order.reason, null);
    assert.match(order.log[0].what, /^started/);
    assert.equal(vm.progressing, true);
    // Followed while it progresses: loads keep coming without being asked for.
    const followed = changes;
    await eventually(() => changes, (c) => c >= followed + 3, 5_000);

    // Ending a progressing canary is refused, in plain words, and the canary stays.
    await vm.end('order');
    assert.equal(vm.error?.status, 409);
    assert.match(describe(vm.error).en, /not possible right now: .*progressing/);
    assert.equal(vm.canaries[0].phase, 'progressing');

    await vm.abort('order');
    assert.equal(vm.error, null);
    assert.equal(vm.busy, null);
    const [aborted] = vm.canaries;
    assert.equal(aborted.phase, 'rolled_back');
    assert.equal(aborted.reason, 'aborted by an operator');
    assert.equal(aborted.weight_percent, 0);
    assert.match(aborted.log.at(-1).what, /rolled back: aborted by an operator/);
    assert.equal(vm.progressing, false);
    // No longer followed once nothing progresses.
    const stopped = changes;
    await sleep(500);
    assert.equal(changes, stopped, 'still loading with nothing progressing');

    await vm.promote('order');
    assert.equal(vm.error?.status, 409, 'a rolled-back canary cannot be promoted');
    await vm.end('order');
    assert.equal(vm.error, null);
    assert.deepEqual(vm.canaries, []);

    // Promoted by hand: every request to the canary, and ended after an abort.
    await startCanary('order', plan);
    await vm.load();
    await vm.promote('order');
    assert.equal(vm.error, null);
    assert.equal(vm.canaries[0].phase, 'promoted');
    assert.equal(vm.canaries[0].weight_percent, 100);
    assert.equal(vm.canaries[0].step, 1);
    await vm.abort('order');
    assert.equal(vm.canaries[0].phase, 'rolled_back');
    await vm.end('order');
    assert.deepEqual(vm.canaries, []);
  } finally {
    vm.dispose();
  }

  // A disposed ViewModel (its element left the page) stops following.
  await startCanary('product', plan);
  const left = new CanaryViewModel(admin, { pollMs: 50 });
  let loads = 0;
  left.onChange = () => loads++;
  await left.load();
  assert.equal(left.progressing, true);
  await eventually(() => loads, (n) => n >= 3, 5_000);
  left.dispose();
  await sleep(50);
  const atDispose = loads;
  await sleep(300);
  assert.equal(loads, atDispose, 'still loading after dispose');
  const cleanup = new CanaryViewModel(admin);
  await cleanup.abort('product');
  await cleanup.end('product');
  assert.equal(cleanup.error, null);
  assert.deepEqual(cleanup.canaries, []);
  cleanup.dispose();

  const customers = new CanaryViewModel(customer);
  await customers.load();
  assert.equal(customers.error.status, 403);
  assert.deepEqual(customers.canaries, []);
});

test('an operator follows every service and the saga live on the operations view until it leaves', async () => {
  // A load that fails on demand, as a gateway restarting would.
  let failing = false;
  const flaky = {
    get: (path) => (failing ? Promise.reject(new ProblemError(502, { detail: 'the gateway is restarting' })) : admin.get(path)),
  };
  const vm = new OperationsViewModel(flaky, { pollMs: 100 });
  let changes = 0;
  vm.onChange = () => changes++;
  try {
    await vm.load();
    assert.equal(vm.error, null);
    assert.equal(vm.loaded, true);
    assert.deepEqual(
      vm.services.map((s) => s.service),
      ['gateway', 'auth', 'product', 'order', 'payment', 'delivery', 'mypage'],
    );
    assert.deepEqual(vm.down, []);
    for (const s of vm.services) {
      assert.equal(s.ready, true, s.service);
      assert.equal(s.instances[0].reason, null, s.service);
    }
    assert.equal(vm.saga.threshold_seconds, 2.5);
    assert.equal(vm.saga.objective, 0.99);
    assert.deepEqual(vm.services.find((s) => s.service === 'order').breakers, { product: 'closed' });

    // An order confirmed: followed without being asked, the next readings have rates
    // and the saga's SLI.
    const catalogue = new CatalogueViewModel(customer);
    await catalogue.load();
    const form = new OrderFormViewModel(customer, catalogue.products.find((p) => p.stock > 0).id);
    await form.place({ quantity: '1', address: '1 Teheran-ro, Gangnam-gu, Seoul' });
    assert.equal(form.error, null);
    // Every reading's interval begins where the previous one's ended, so one of them
    // holds the order.
    await eventually(() => vm.saga.orders_placed_per_second, (rate) => rate > 0, 10_000);
    assert.ok(vm.reading.interval_seconds > 0);
    assert.equal(vm.saga.confirmed_in_time_since_start, 1);
    const gateway = vm.services.find((s) => s.service === 'gateway');
    assert.ok(gateway.requests_per_second > 0);
    assert.equal(gateway.error_ratio, 0);

    // A failed load keeps the last figures beside the error, and the next one recovers.
    const shown = vm.reading;
    failing = true;
    await eventually(() => vm.error?.status, (status) => status === 502, 5_000);
    assert.equal(vm.reading, shown);
    assert.match(describe(vm.error).en, /unavailable right now/);
    failing = false;
    await eventually(() => vm.error, (error) => error === null, 5_000);
    assert.equal(vm.services.length, 7);
  } finally {
    vm.dispose();
  }
  // Disposed (its element left the page), it stops following.
  await sleep(150);
  const atDispose = changes;
  await sleep(400);
  assert.equal(changes, atDispose, 'still loading after dispose');

  // A customer is refused, in plain words, and not asked again.
  const customers = new OperationsViewModel(customer, { pollMs: 50 });
  let loads = 0;
  customers.onChange = () => loads++;
  await customers.load();
  assert.equal(customers.error.status, 403);
  assert.deepEqual(customers.services, []);
  assert.equal(customers.saga, null);
  await sleep(300);
  assert.equal(loads, 1, 'a refusal was asked again');
  customers.dispose();
});

test('a trace is a tree of rows: each span under its parent, siblings by start, orphans as roots', () => {
  const span = (id, parent, start, ms, code = 'unset') => ({ span_id: id, parent_span_id: parent, service: 's', name: id, start_unix_nano: start * 1e6, duration_ms: ms, status: { code } });
  const rows = waterfallRows([
    span('c', 'a', 30, 10),
    span('a', null, 0, 100),
    span('b', 'a', 10, 10, 'error'),
    span('d', 'b', 12, 5),
    span('e', 'missing', 50, 5),
  ]);
  assert.deepEqual(rows.map((r) => [r.span.span_id, r.depth]), [['a', 0], ['b', 1], ['d', 2], ['c', 1], ['e', 0]]);
  const d = rows[2];
  assert.equal(d.offsetMs, 12);
  assert.equal(d.left, 12);
  assert.equal(d.width, 5);
  assert.deepEqual(rows.map((r) => r.failed), [false, true, false, false, false]);
  assert.deepEqual(waterfallRows([]), []);
});

test('an operator reads an order\'s trace as a waterfall of every service, the gateway\'s request first', async () => {
  const products = await customer.get('/api/products');
  const placed = await customer.post('/api/orders', { product_id: products.items.find((p) => p.stock > 0).id, quantity: 1, address: '1 Teheran-ro, Seoul' });
  const vm = new TraceViewModel(admin, placed.order_id);
  const services = ['gateway', 'order', 'product', 'payment', 'delivery', 'mypage'];
  await eventually(
    async () => {
      await vm.load();
      return vm;
    },
    (vm) => services.every((service) => vm.rows.some((r) => r.span.service === service)) && vm.rows.some((r) => r.span.service === 'mypage' && r.span.name.startsWith('process delivery')),
  );
  assert.equal(vm.error, null);
  assert.deepEqual(vm.unanswered, []);
  assert.equal(vm.rows.length, vm.trace.spans.length);
  assert.equal(vm.rows[0].span.service, 'gateway');
  assert.equal(vm.rows[0].span.name, 'POST /api/orders');
  assert.equal(vm.rows[0].depth, 0);
  assert.equal(vm.rows[0].offsetMs, 0);
  // Tree order: each row's parent is an earlier row one level up.
  const at = new Map();
  vm.rows.forEach((row, i) => {
    if (i > 0) {
      const parent = at.get(row.span.parent_span_id);
      assert.ok(parent, `the parent of ${row.span.name} comes before it`);
      assert.equal(row.depth, parent.depth + 1, row.span.name);
      assert.ok(row.left >= 0 && row.left + row.width <= 100.0001, row.span.name);
    }
    at.set(row.span.span_id, row);
  });
  assert.ok(vm.totalMs > 0);

  const unknown = new TraceViewModel(admin, '01890000-0000-7000-8000-000000000000');
  await unknown.load();
  assert.equal(unknown.error.status, 404);
  assert.match(unknown.error.problem.detail, /MALL_SPAN_STORE_CAPACITY/);
  const refused = new TraceViewModel(customer, placed.order_id);
  await refused.load();
  assert.equal(refused.error.status, 403);
  assert.deepEqual(refused.rows, []);
});
