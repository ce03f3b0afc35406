// Starts a real shop (`mall up`, or `mall up --split`) on free ports in a temporary folder
// for the UI tests, with an admin account, and stops it afterwards.

import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const ADMIN = { email: 'ui-admin@12st.test', password: 'ui admin password' };
const ROOT = new URL('..', import.meta.url).pathname;
const BIN = process.env.MALL_BIN ?? join(process.env.CARGO_TARGET_DIR ?? join(ROOT, 'target'), 'debug', 'mall');
const SERVICES = { gateway: 0, order: 1, delivery: 2, product: 3, payment: 4, mypage: 5, auth: 6 };

function portFree(port) {
  return new Promise((resolve) => {
    const server = createServer().once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

async function freePorts(count) {
  for (;;) {
    // Below the ephemeral range (32768 and up), where outgoing connections take ports.
    const base = 20000 + Math.floor(Math.random() * 12000);
    const checks = await Promise.all(Array.from({ length: count }, (_, i) => portFree(base + i)));
    if (checks.every(Boolean)) return base;
  }
}

export async function startShop({ split = false, env = {} } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'mall-ui-'));
  const basePort = await freePorts(7);
  execFileSync(BIN, ['admin', 'create-user', '--init', '--admin', '--email', ADMIN.email, '--name', 'Admin', '--data-dir', dir], {
    env: { ...process.env, MALL_NEW_USER_PASSWORD: ADMIN.password },
  });
  const child = spawn(BIN, ['up', ...(split ? ['--split'] : []), '--base-port', String(basePort), '--data-dir', dir], {
    env: {
      ...process.env,
      MALL_LOG: 'warn',
      MALL_RATE_LIMIT_IP_PER_SEC: '100000',
      MALL_RATE_LIMIT_IP_BURST: '100000',
      MALL_RATE_LIMIT_CUSTOMER_PER_SEC: '100000',
      MALL_RATE_LIMIT_CUSTOMER_BURST: '100000',
      MALL_RATE_LIMIT_LOGIN_PER_MIN: '100000',
      MALL_RATE_LIMIT_LOGIN_BURST: '100000',
      ...env,
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk) => (stderr += chunk));
  const started = Date.now();
  for (const offset of Object.values(SERVICES)) {
    for (;;) {
      try {
        const response = await fetch(`http://127.0.0.1:${basePort + offset}/health/ready`);
        if (response.ok) break;
      } catch {}
      if (child.exitCode !== null || Date.now() - started > 60_000) throw new Error(`the shop did not start: ${stderr}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return {
    url: `http://127.0.0.1:${basePort}`,
    dir,
    /** Sends a signal to one service's process (split shops only). */
    signal(service, signal) {
      process.kill(Number(readFileSync(join(dir, 'run', `${service}.pid`), 'utf8')), signal);
    },
    async stop() {
      child.kill('SIGTERM');
      await new Promise((resolve) => (child.exitCode !== null ? resolve() : child.once('exit', resolve)));
    },
  };
}

/** Polls `read` until `accept` says yes, for at most `ms`. */
export async function eventually(read, accept, ms = 20_000) {
  const started = Date.now();
  for (;;) {
    const value = await read();
    if (accept(value)) return value;
    if (Date.now() - started > ms) throw new Error(`still ${JSON.stringify(value)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
