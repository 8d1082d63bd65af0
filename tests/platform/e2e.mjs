// What a platform integrating hawker does first, end to end against the real binary:
//
//   1. starts the two example webhook receivers (examples/webhooks/receiver.mjs and
//      receiver.py) and a hawker configured to send them its webhooks;
//   2. with the client generated from docs/openapi.yaml (api.mjs: openapi-fetch typed by
//      openapi-typescript, every answer validated against the document), creates a show and
//      its products;
//   3. a seller goes live (the SDK's publish() in headless Chromium, fake camera);
//   4. examples/viewer, served from another origin with @hawker/sdk installed from the packed
//      tarball (scripts/test.sh prepares it, --site), plays the show; the generated client
//      posts a highlight event; the product card appears; the viewer page shows the viewer
//      count the seller sees; Buy is confirmed;
//   5. the generated client finds the order, ends the show;
//   6. both receivers have verified the signature of show.live, order.created and show.ended
//      as hawker sent them, and both refuse a body whose signature does not match.
//
// usage: node tests/platform/e2e.mjs --hawker target/release/hawker --site DIR [--out DIR]
// Needs node >= 20, python3, Chromium (CHROMIUM_PATH, default /usr/bin/chromium) and
// tests/platform/node_modules. Everything binds to 127.0.0.1 on ephemeral ports; the run is
// bounded (TIMEOUT_MS). Exit status non-zero on any failure; hawker's log and screenshots go
// to --out (default tests/platform/out).
import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

import * as api from './api.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '../..');
const TIMEOUT_MS = 120_000;
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const SECRET = 'platform-test-webhook-secret-0123456789';
const SHOW = 'spring-sale';

const opts = { hawker: '', site: '', out: path.join(HERE, 'out') };
for (let i = 2; i < process.argv.length; i++) {
  const a = process.argv[i];
  if (a === '--hawker') opts.hawker = path.resolve(process.argv[++i]);
  else if (a === '--site') opts.site = path.resolve(process.argv[++i]);
  else if (a === '--out') opts.out = path.resolve(process.argv[++i]);
  else throw new Error(`unknown argument ${a}\nusage: node tests/platform/e2e.mjs --hawker BIN --site DIR [--out DIR]`);
}
if (!opts.hawker || !opts.site) throw new Error('usage: node tests/platform/e2e.mjs --hawker BIN --site DIR [--out DIR]');
fs.mkdirSync(opts.out, { recursive: true });

const t0 = Date.now();
const log = (...a) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(5)}s]`, ...a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const assert = (ok, msg) => {
  if (!ok) throw new Error(msg);
};

/** @type {{procs: import('node:child_process').ChildProcess[], servers: http.Server[], browser: any, tmp: string}} */
const res = { procs: [], servers: [], browser: null, tmp: fs.mkdtempSync(path.join(os.tmpdir(), 'hawker-platform-')) };

async function cleanup() {
  if (res.browser) await res.browser.close().catch(() => {});
  for (const p of res.procs) if (p.exitCode === null) p.kill('SIGTERM');
  for (const s of res.servers) s.close();
  await sleep(200);
  for (const p of res.procs) if (p.exitCode === null) p.kill('SIGKILL');
  fs.rmSync(res.tmp, { recursive: true, force: true });
}

async function waitFor(what, fn, timeoutMs = 20_000, everyMs = 100) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${last.message}` : ''}`);
    await sleep(everyMs);
  }
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// ------------------------------------------------------------------------------------------
// Webhook receivers (the examples, as shipped)
// ------------------------------------------------------------------------------------------

/** Start a receiver; its JSON lines are collected in `lines`. */
async function startReceiver(name, cmd, args) {
  const proc = spawn(cmd, args, {
    cwd: REPO,
    env: { ...process.env, HAWKER_WEBHOOK_SECRET: SECRET, PORT: '0' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  res.procs.push(proc);
  const r = { name, proc, url: '', lines: /** @type {any[]} */ ([]), stderr: '' };
  proc.stderr.on('data', (c) => (r.stderr += c));
  readline.createInterface({ input: proc.stdout }).on('line', (l) => {
    try {
      const v = JSON.parse(l);
      if (v.listening) r.url = v.listening;
      else r.lines.push(v);
    } catch {
      r.stderr += `${l}\n`;
    }
  });
  await waitFor(`${name} receiver to listen`, () => r.url || (proc.exitCode !== null && Promise.reject(new Error(r.stderr))), 10_000, 50);
  log(`${name} receiver: ${r.url}`);
  return r;
}

// ------------------------------------------------------------------------------------------
// hawker
// ------------------------------------------------------------------------------------------

async function startHawker(receivers) {
  const httpPort = await freePort();
  const metricsPort = await freePort();
  const cfgPath = path.join(res.tmp, 'hawker.toml');
  fs.writeFileSync(
    cfgPath,
    [
      `data_dir = ${JSON.stringify(path.join(res.tmp, 'data'))}`,
      '[http]',
      `listen = "127.0.0.1:${httpPort}"`,
      '[metrics]',
      `listen = "127.0.0.1:${metricsPort}"`,
      '[media]',
      'shards = 1',
      'bind_ip = "127.0.0.1"',
      '[auth]',
      'anonymous_viewers = true',
      '[shows]',
      'seed_demo = false',
      'create_on_first_use = false',
      '[commerce]',
      `webhook_urls = ${JSON.stringify(receivers.map((r) => r.url))}`,
      `webhook_secret = ${JSON.stringify(SECRET)}`,
      '',
    ].join('\n'),
  );
  const logFile = fs.createWriteStream(path.join(opts.out, 'hawker.log'));
  const proc = spawn(opts.hawker, ['serve', '--config', cfgPath], {
    cwd: res.tmp,
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'info', NO_COLOR: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  res.procs.push(proc);
  proc.stdout.pipe(logFile);
  proc.stderr.pipe(logFile);
  const base = `http://127.0.0.1:${httpPort}`;
  await waitFor('hawker /healthz', async () => {
    if (proc.exitCode !== null) throw new Error(`hawker exited (${proc.exitCode}); see ${path.join(opts.out, 'hawker.log')}`);
    return (await fetch(`${base}/healthz`)).status === 200;
  });
  const token = (show, role) => {
    const r = spawnSync(opts.hawker, ['token', '--config', cfgPath, '--show', show, '--role', role], {
      cwd: res.tmp,
      encoding: 'utf8',
      env: { ...process.env, RUST_LOG: 'warn' },
    });
    if (r.status !== 0) throw new Error(`hawker token failed: ${r.stderr}`);
    return r.stdout.trim();
  };
  log(`hawker: ${base}`);
  return { base, token };
}

// ------------------------------------------------------------------------------------------
// The third-party site: examples/viewer with @hawker/sdk installed from the tarball
// ------------------------------------------------------------------------------------------

const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.json': 'application/json' };

async function serveSite(dir) {
  const server = http.createServer((req, resp) => {
    const url = new URL(req.url, 'http://x');
    const file = path.join(dir, path.normalize(decodeURIComponent(url.pathname)).replace(/^(\.\.[/\\])+/, ''));
    if (!file.startsWith(dir) || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
      resp.writeHead(404).end();
      return;
    }
    resp.writeHead(200, { 'Content-Type': TYPES[path.extname(file)] || 'application/octet-stream' });
    fs.createReadStream(file).pipe(resp);
  });
  res.servers.push(server);
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${server.address().port}`;
}

// ------------------------------------------------------------------------------------------
// The run
// ------------------------------------------------------------------------------------------

async function run() {
  assert(fs.existsSync(path.join(opts.site, 'node_modules/@hawker/sdk/hawker.js')), `${opts.site} has no node_modules/@hawker/sdk (run scripts/test.sh's SDK step)`);
  assert(fs.existsSync(CHROMIUM), `no Chromium at ${CHROMIUM}`);

  const receivers = [
    await startReceiver('node', process.execPath, ['examples/webhooks/receiver.mjs']),
    await startReceiver('python', process.env.PYTHON || 'python3', ['examples/webhooks/receiver.py']),
  ];
  const hawker = await startHawker(receivers);
  const checker = new api.ResponseChecker();
  const c = api.client(hawker.base, hawker.token('*', 'admin'), checker);

  // The server serves the very file the package ships, and its declarations.
  for (const f of ['hawker.js', 'hawker.d.ts']) {
    const served = Buffer.from(await (await fetch(`${hawker.base}/sdk/${f}`)).arrayBuffer());
    const packed = fs.readFileSync(path.join(opts.site, 'node_modules/@hawker/sdk', f));
    assert(served.equals(packed), `/sdk/${f} differs from the packaged @hawker/sdk/${f}`);
  }
  log('/sdk/hawker.js and /sdk/hawker.d.ts are the packaged files');

  // 2. Schedule the show through the generated client.
  await api.missingShow(c);
  await api.createShow(c, SHOW, [
    { sku: 'lamp-1', title: 'Brass desk lamp', price: 4900, stock: 25 },
    { sku: 'mug-2', title: 'Hand-thrown mug', price: 1800, stock: 60 },
  ]);
  log('generated client: show and products created');

  // 3. The seller goes live.
  res.browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--use-fake-ui-for-media-stream',
      '--use-fake-device-for-media-stream',
      '--allow-loopback-in-peer-connection',
      '--autoplay-policy=no-user-gesture-required',
      '--disable-background-networking',
      '--no-first-run',
    ],
  });
  const consoleLines = [];
  const page = async (label, url) => {
    const ctx = await res.browser.newContext({ viewport: { width: 420, height: 760 } });
    const p = await ctx.newPage();
    p.on('console', (m) => consoleLines.push(`[${label}] ${m.type()}: ${m.text()}`));
    p.on('pageerror', (e) => consoleLines.push(`[${label}] pageerror: ${e.message}`));
    await p.goto(url);
    return p;
  };
  const seller = await page('seller', `${hawker.base}/healthz`);
  await seller.evaluate(
    async ({ show, token }) => {
      const { publish } = await import('/sdk/hawker.js');
      const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 320, height: 240, frameRate: 15 }, audio: true });
      const preview = document.createElement('video');
      preview.muted = true;
      preview.srcObject = stream;
      document.body.append(preview);
      await preview.play();
      const studio = await publish(`/whip/${show}`, token, stream, { preview });
      window.seller = { viewers: null };
      studio.on('viewers', (v) => (window.seller.viewers = v.count));
    },
    { show: SHOW, token: hawker.token(SHOW, 'publisher') },
  );
  await waitFor('the show to be live', async () => {
    const s = await api.getShow(c, SHOW);
    return s.state === 'live' && s.live;
  });
  log('seller: live');

  // 4. The third-party viewer page.
  const site = await serveSite(opts.site);
  const viewer = await page('viewer', `${site}/index.html?server=${encodeURIComponent(hawker.base)}&show=${SHOW}`);
  await waitFor('the viewer page to play video', () => viewer.evaluate(() => document.querySelector('video').currentTime > 0), 30_000);
  const ev = await api.highlight(c, SHOW, 'lamp-1');
  log(`generated client: highlight ${ev.highlight_id} (rtp_ts ${ev.rtp_ts}, basis ${ev.basis})`);
  await waitFor('the product card', () => viewer.evaluate(() => !document.getElementById('card').hidden && document.getElementById('card-title').textContent === 'Brass desk lamp'));
  const cardText = await viewer.evaluate(() => document.getElementById('card').textContent.replace(/\s+/g, ' ').trim());
  log(`viewer: card "${cardText}"`);
  assert(/\$49\.00/.test(cardText) && /25 left/.test(cardText), `card shows price and stock: ${cardText}`);

  // The viewer pages and the seller agree on the viewer count, also after someone joins (the
  // first page's snapshot is then out of date).
  const agree = async (n, pages) => {
    let seen = {};
    return waitFor(`viewer pages and seller to agree on ${n} viewers`, async () => {
      const shown = await Promise.all(pages.map((p) => p.evaluate(() => document.getElementById('viewers').textContent)));
      const sellerCount = await seller.evaluate(() => window.seller.viewers);
      seen = { shown, sellerCount };
      if (shown.every((s) => s === `${n} watching`) && sellerCount === n) return seen;
      throw new Error(`last seen: viewer pages ${JSON.stringify(shown)}, seller ${sellerCount}`);
    });
  };
  let counts = await agree(1, [viewer]);
  log(`viewer count: viewer page "${counts.shown}", seller ${counts.sellerCount}`);
  const second = await page('viewer-2', `${site}/index.html?server=${encodeURIComponent(hawker.base)}&show=${SHOW}`);
  counts = await agree(2, [viewer, second]);
  log(`viewer count after a second viewer joined: viewer pages ${JSON.stringify(counts.shown)}, seller ${counts.sellerCount}`);

  await viewer.click('#buy');
  const result = await waitFor('the order', async () => {
    const t = await viewer.evaluate(() => document.getElementById('result').textContent);
    return t && t;
  });
  assert(/^Order \S+ confirmed$/.test(result), `viewer page: ${result}`);
  const orderId = result.split(' ')[1];
  log(`viewer: ${result}`);
  await viewer.screenshot({ path: path.join(opts.out, 'viewer-example.png') });

  // 5. The platform sees the order, then ends the show.
  const orders = await api.orders(c, SHOW);
  assert(orders.length === 1, `one order, got ${JSON.stringify(orders)}`);
  const o = orders[0];
  assert(o.order_id === orderId && o.sku === 'lamp-1' && o.qty === 1 && o.unit_price === 4900, `order: ${JSON.stringify(o)}`);
  assert(o.highlight_id === ev.highlight_id, `order from highlight ${ev.highlight_id}: ${JSON.stringify(o)}`);
  const same = await api.order(c, SHOW, orderId);
  assert(same.seq === o.seq, `getOrder: ${JSON.stringify(same)}`);
  const products = await c.GET('/api/v1/shows/{show}/products/{sku}', { params: { path: { show: SHOW, sku: 'lamp-1' } } });
  assert(products.data && products.data.stock === 24, `stock after the order: ${JSON.stringify(products.data)}`);
  const ended = await api.endShow(c, SHOW);
  assert(ended.state === 'ended' && ended.peak_viewers >= 1, `endShow: ${JSON.stringify(ended)}`);
  await api.listAndDelete(c, SHOW, 'mug-2');
  const ops = new Set(checker.checked.map((w) => w.replace(/ → .*/, '')));
  log(`generated client: order ${o.order_id} (seq ${o.seq}), show ended and deleted; ${checker.checked.length} answers from ${ops.size} operations matched docs/openapi.yaml`);

  // 6. Webhooks, verified by both receivers.
  const want = ['show.live', 'order.created', 'show.ended'];
  for (const r of receivers) {
    await waitFor(`${r.name} receiver to verify ${want.join(', ')}`, () => {
      if (want.every((t) => r.lines.some((l) => l.verified && l.event === t))) return true;
      throw new Error(`so far: ${JSON.stringify(r.lines.map((l) => ({ delivery: l.delivery, event: l.event, verified: l.verified })))}`);
    }, 30_000);
    const bad = r.lines.filter((l) => !l.verified);
    assert(!bad.length, `${r.name} receiver refused hawker's own webhooks: ${JSON.stringify(bad)}`);
    const created = r.lines.find((l) => l.event === 'order.created');
    assert(created.data.order_id === orderId, `${r.name}: order.created is the order: ${JSON.stringify(created)}`);
    log(`${r.name} receiver: verified ${r.lines.map((l) => `${l.event}#${l.delivery}`).join(', ')}`);
  }
  // ...and refuse what hawker did not sign.
  const body = JSON.stringify({ id: 999, type: 'order.created', created_at: Date.now(), data: { order_id: 'forged' } });
  const goodSig = 'sha256=' + crypto.createHmac('sha256', SECRET).update(body).digest('hex');
  for (const r of receivers) {
    for (const [what, sig] of [
      ['a wrong signature', 'sha256=' + crypto.createHmac('sha256', 'not-the-secret').update(body).digest('hex')],
      ['no signature', null],
      ['a corrupted signature', goodSig.replace(/.$/, (ch) => (ch === '0' ? '1' : '0'))],
    ]) {
      const headers = { 'Content-Type': 'application/json', 'X-Hawker-Event': 'order.created', 'X-Hawker-Delivery': '999' };
      if (sig) headers['X-Hawker-Signature'] = sig;
      const resp = await fetch(r.url, { method: 'POST', headers, body });
      assert(resp.status === 401, `${r.name} receiver answered ${resp.status} to ${what}`);
    }
    const ok = await fetch(r.url, { method: 'POST', headers: { 'Content-Type': 'application/json', 'X-Hawker-Delivery': '999', 'X-Hawker-Signature': goodSig }, body });
    assert(ok.status === 204, `${r.name} receiver answered ${ok.status} to a correctly signed body`);
  }
  log('receivers: forged and unsigned bodies refused (401), a correctly signed one accepted');
  if (consoleLines.some((l) => /pageerror/.test(l))) throw new Error(`page errors:\n${consoleLines.join('\n')}`);
  return consoleLines;
}

const timer = setTimeout(() => {
  console.error(`FAILED: timed out after ${TIMEOUT_MS} ms`);
  cleanup().finally(() => process.exit(1));
}, TIMEOUT_MS);
try {
  await run();
  log('platform e2e: OK');
  clearTimeout(timer);
  await cleanup();
} catch (e) {
  clearTimeout(timer);
  console.error(`FAILED: ${e.stack || e}`);
  console.error(`hawker log: ${path.join(opts.out, 'hawker.log')}`);
  await cleanup();
  process.exit(1);
}
