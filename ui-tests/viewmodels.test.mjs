// The ViewModels without a DOM, against a real shop: each command and what the state
// becomes, errors included.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { ProblemError, createApi, describe } from '../crates/services/gateway/ui/api.js';
import { DeadLettersViewModel } from '../crates/services/gateway/ui/dlq-vm.js';
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
  const adminToken = await logIn(ADMIN.email, ADMIN.password);
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
