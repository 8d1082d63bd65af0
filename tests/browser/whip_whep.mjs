#!/usr/bin/env node
// Real-browser end-to-end test of hawker: headless Chromium publishes over WHIP and plays over
// WHEP, against a real hawker process.
//
//   node tests/browser/whip_whep.mjs [--hawker PATH] [--out DIR]
//
// Without --hawker (or HAWKER_BIN) the script runs `cargo build --release --bin hawker` and
// uses target/release/hawker. Other knobs (environment):
//   CHROMIUM_PATH        browser binary (default /usr/bin/chromium)
//   HAWKER_E2E_RUST_LOG  RUST_LOG for the server (default hawker=debug,str0m=info,warn);
//                        its output goes to OUT/hawker.log
//   HAWKER_E2E_WAIT_MS   bound for each "frames arrive" wait (default 30000)
//   HAWKER_E2E_TIMEOUT_MS  bound for the whole run after the build (default 300000)
//
// Checks (each prints PASS/FAIL; the last line is "browser: N passed, N failed"):
//   publisher-first      publisher live, then two viewers (one per shard); each decodes
//                        > 30 frames that keep rising, and audio packets keep arriving
//   publisher-reconnect  WHIP session DELETEd and published again; the viewers'
//                        framesDecoded rises again without any renegotiation
//   viewer-first         viewer joins a show with no publisher; starts receiving once the
//                        publisher goes live
//   chromium-to-aiortc   an aiortc viewer (tests/interop/aiortc_peer.py) decodes the Chromium
//                        publisher's stream, then DELETEs (200)
//   aiortc-to-chromium   an aiortc publisher (VP8 320x240 + Opus) to a new show; a Chromium
//                        viewer decodes it at 320x240; both DELETE (200)
//   metrics              /metrics scraped, key counters printed and sanity-checked
//   teardown             every session DELETEd (200), peers gauge back to 0
//   shutdown             SIGTERM, hawker exits with status 0
// Artifacts (SDP offers/answers, getStats dumps, page console, server log) go to OUT
// (default tests/browser/out/). Exit status is non-zero on any failure.

import { chromium } from 'playwright-core';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '..', '..');

// ------------------------------------------------------------------------------------------
// Options
// ------------------------------------------------------------------------------------------

function parseArgs(argv) {
  const o = { hawker: process.env.HAWKER_BIN || null, out: path.join(HERE, 'out') }; // (DEFAULT_OUT)
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      if (i + 1 >= argv.length) usage(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--hawker') o.hawker = val();
    else if (a === '--out') o.out = val();
    else if (a === '-h' || a === '--help') usage();
    else usage(`unknown argument ${a}`);
  }
  return o;
}

function usage(err) {
  const text = 'usage: node tests/browser/whip_whep.mjs [--hawker PATH] [--out DIR]';
  if (err) {
    console.error(`${err}\n${text}`);
    process.exit(2);
  }
  console.log(text);
  process.exit(0);
}

const opts = parseArgs(process.argv.slice(2));
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const RUST_LOG = process.env.HAWKER_E2E_RUST_LOG || 'hawker=debug,str0m=info,warn';
const WAIT_MS = Number(process.env.HAWKER_E2E_WAIT_MS || 30000);
const TIMEOUT_MS = Number(process.env.HAWKER_E2E_TIMEOUT_MS || 300000);
const FRAMES = 30; // framesDecoded to reach (above the baseline)
const AUDIO_PACKETS = 50; // ~1 s of 20 ms Opus packets
const CONNECT_MS = 15000;

const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--use-fake-ui-for-media-stream',
  '--use-fake-device-for-media-stream',
  '--allow-loopback-in-peer-connection',
  '--disable-quic',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  // Viewer pages never call getUserMedia, so Chromium would hide their host candidates
  // behind mDNS names; keep plain 127.0.0.1 candidates everywhere.
  '--disable-features=WebRtcHideLocalIpsWithMdns',
  '--autoplay-policy=no-user-gesture-required',
];

// ------------------------------------------------------------------------------------------
// Output
// ------------------------------------------------------------------------------------------

const T0 = Date.now();
const since = () => `${((Date.now() - T0) / 1000).toFixed(1).padStart(6)}s`;
const log = (msg) => console.log(`[${since()}] ${msg}`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// The out dir is emptied first, but only if it is one this script made (marker file) or empty.
const MARKER = path.join(opts.out, '.hawker-e2e-out');
const DEFAULT_OUT = path.join(HERE, 'out');
if (path.resolve(opts.out) !== DEFAULT_OUT && fs.existsSync(opts.out) && fs.readdirSync(opts.out).length && !fs.existsSync(MARKER)) {
  console.error(`refusing to empty ${opts.out}: not empty and not made by this script (no ${MARKER})`);
  process.exit(2);
}
fs.rmSync(opts.out, { recursive: true, force: true });
fs.mkdirSync(path.join(opts.out, 'sdp'), { recursive: true });
fs.writeFileSync(MARKER, 'artifacts of tests/browser/whip_whep.mjs; emptied on every run\n');
const writeOut = (name, data) =>
  fs.writeFileSync(path.join(opts.out, name), typeof data === 'string' ? data : JSON.stringify(data, null, 2));

// ------------------------------------------------------------------------------------------
// Resources (cleaned up on every exit path)
// ------------------------------------------------------------------------------------------

const res = {
  tmp: fs.mkdtempSync(path.join(os.tmpdir(), 'hawker-e2e-')),
  hawker: null, // { proc, exited: Promise<{code, signal}>, http, metrics, logTail: [] }
  staticServer: null,
  browser: null,
  pages: [], // { label, page }
  console: [],
};

process.on('exit', () => {
  if (res.hawker && res.hawker.proc.exitCode === null && res.hawker.proc.signalCode === null) {
    try {
      res.hawker.proc.kill('SIGKILL');
    } catch {}
  }
  fs.rmSync(res.tmp, { recursive: true, force: true });
});
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    console.error(`\nreceived ${sig}, stopping`);
    process.exit(130);
  });
}

// ------------------------------------------------------------------------------------------
// Helpers
// ------------------------------------------------------------------------------------------

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function buildHawker() {
  log('building hawker: cargo build --release --bin hawker');
  const r = spawnSync('cargo', ['build', '--release', '--bin', 'hawker'], { cwd: REPO, stdio: 'inherit' });
  if (r.status !== 0) throw new Error(`cargo build failed (status ${r.status})`);
  const target = process.env.CARGO_TARGET_DIR ? path.resolve(REPO, process.env.CARGO_TARGET_DIR) : path.join(REPO, 'target');
  return path.join(target, 'release', 'hawker');
}

function startStaticServer() {
  const files = {
    '/': ['index.html', 'text/html; charset=utf-8'],
    '/index.html': ['index.html', 'text/html; charset=utf-8'],
    '/client.js': ['client.js', 'text/javascript; charset=utf-8'],
  };
  const server = http.createServer((req, resp) => {
    const f = files[new URL(req.url, 'http://x').pathname];
    if (!f) {
      resp.writeHead(404).end();
      return;
    }
    resp.writeHead(200, { 'Content-Type': f[1], 'Cache-Control': 'no-store' });
    resp.end(fs.readFileSync(path.join(HERE, 'static', f[0])));
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

async function startHawker(bin) {
  for (let attempt = 1; ; attempt++) {
    const httpPort = await freePort();
    const metricsPort = await freePort();
    const dataDir = path.join(res.tmp, 'data');
    const cfgPath = path.join(res.tmp, 'hawker.toml');
    const cfg = [
      `data_dir = ${JSON.stringify(dataDir)}`,
      '',
      '[http]',
      `listen = "127.0.0.1:${httpPort}"`,
      '',
      '[metrics]',
      `listen = "127.0.0.1:${metricsPort}"`,
      '',
      '[media]',
      'shards = 2',
      'bind_ip = "127.0.0.1"',
      '',
      '[auth]',
      'anonymous_viewers = true',
      '',
    ].join('\n');
    fs.writeFileSync(cfgPath, cfg);
    writeOut('hawker.toml', cfg);
    log(`starting ${bin} serve (http 127.0.0.1:${httpPort}, metrics 127.0.0.1:${metricsPort}, 2 shards, RUST_LOG=${RUST_LOG})`);
    const logFile = fs.createWriteStream(path.join(opts.out, 'hawker.log'), { flags: attempt === 1 ? 'w' : 'a' });
    const proc = spawn(bin, ['serve', '--config', cfgPath], {
      cwd: res.tmp,
      env: { ...process.env, RUST_LOG, NO_COLOR: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const h = {
      proc,
      cfgPath,
      http: `http://127.0.0.1:${httpPort}`,
      metrics: `http://127.0.0.1:${metricsPort}`,
      stdout: '',
      logTail: [],
      exited: new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal }))),
    };
    const collect = (stream, isStdout) => {
      let partial = '';
      stream.on('data', (chunk) => {
        logFile.write(chunk);
        const text = partial + chunk.toString();
        const lines = text.split('\n');
        partial = lines.pop();
        for (const l of lines) {
          if (isStdout) h.stdout += l + '\n';
          h.logTail.push(l);
          if (h.logTail.length > 400) h.logTail.shift();
        }
      });
    };
    collect(proc.stdout, true);
    collect(proc.stderr, false);
    res.hawker = h;

    // Ready when /healthz answers on both listeners.
    let exited = null;
    h.exited.then((e) => (exited = e));
    const deadline = Date.now() + 20000;
    let ready = false;
    while (!ready && exited === null && Date.now() < deadline) {
      await sleep(100);
      try {
        const [a, b] = await Promise.all([fetch(`${h.http}/healthz`), fetch(`${h.metrics}/healthz`)]);
        ready = a.status === 200 && b.status === 200;
      } catch {}
    }
    if (ready) {
      const m = h.stdout.match(/publisher token for show "demo".*\n\s*(\S+)/);
      log(`hawker is up (pid ${proc.pid}); printed demo publisher token: ${m ? 'yes' : 'NO'}`);
      return h;
    }
    if (exited === null) {
      proc.kill('SIGKILL');
      await h.exited;
      throw new Error(`hawker did not answer /healthz within 20 s; log tail:\n${h.logTail.slice(-30).join('\n')}`);
    }
    const tail = h.logTail.slice(-30).join('\n');
    if (attempt < 3 && /cannot listen/.test(tail)) {
      log(`port race (attempt ${attempt}), retrying: ${tail.split('\n').pop()}`);
      continue;
    }
    throw new Error(`hawker exited during start-up (${JSON.stringify(exited)}); log tail:\n${tail}`);
  }
}

function hawkerToken(bin, cfgPath, show, role) {
  const r = spawnSync(bin, ['token', '--config', cfgPath, '--show', show, '--role', role], {
    cwd: res.tmp,
    encoding: 'utf8',
    env: { ...process.env, RUST_LOG: 'warn' },
  });
  if (r.status !== 0) throw new Error(`hawker token failed (${r.status}): ${r.stderr}`);
  const token = r.stdout.trim();
  if (!/^[\w-]+\.[\w-]+\.[\w-]+$/.test(token)) throw new Error(`hawker token printed ${JSON.stringify(r.stdout)}`);
  return token;
}

async function newPage(label, staticBase) {
  const ctx = await res.browser.newContext();
  const page = await ctx.newPage();
  page.on('console', (m) => res.console.push(`[${since()}] [${label}] ${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => res.console.push(`[${since()}] [${label}] pageerror: ${e.message}`));
  await page.goto(`${staticBase}/index.html`);
  await page.waitForFunction(() => !!window.e2e);
  const p = { label, page, ctx, sdpCount: 0 };
  res.pages.push(p);
  return p;
}

function saveSdp(p, kind, r) {
  p.sdpCount++;
  const base = `${p.label}-${p.sdpCount}-${kind}`;
  fs.writeFileSync(path.join(opts.out, 'sdp', `${base}-offer.sdp`), r.offer);
  fs.writeFileSync(path.join(opts.out, 'sdp', `${base}-answer.sdp`), r.answer);
  const mlines = (sdp) =>
    sdp
      .split(/\r?\n/)
      .filter((l) => l.startsWith('m='))
      .map((l) => l.split(' ')[0].slice(2))
      .join('+');
  const rtpmaps = (sdp) =>
    sdp
      .split(/\r?\n/)
      .filter((l) => l.startsWith('a=rtpmap:'))
      .map((l) => l.split(' ')[1].split('/')[0])
      .filter((c) => !/^(rtx|red|ulpfec|flexfec-03|CN|telephone-event)$/i.test(c))
      .join(',');
  log(`  ${p.label}: POST ${r.status} in ${r.ms} ms, Location ${new URL(r.location).pathname}; answer m=${mlines(r.answer)} codecs ${rtpmaps(r.answer)}`);
}

async function publish(p, url, token) {
  const r = await p.page.evaluate((a) => window.e2e.publish(a), { url, token });
  saveSdp(p, 'whip', r);
  const at = await p.page.evaluate((ms) => window.e2e.waitConnected(ms), CONNECT_MS);
  log(`  ${p.label}: connected (page t=${at} ms)`);
  return r;
}

async function view(p, url) {
  const r = await p.page.evaluate((a) => window.e2e.view(a), { url, token: null });
  saveSdp(p, 'whep', r);
  const at = await p.page.evaluate((ms) => window.e2e.waitConnected(ms), CONNECT_MS);
  log(`  ${p.label}: connected (page t=${at} ms)`);
  return r;
}

const stats = (p) => p.page.evaluate(() => window.e2e.stats());
const num = (v) => v || 0;

// Wait until the viewer's framesDecoded is FRAMES above `base` and audio packets arrive, then
// check both keep rising over a further window.
async function waitMedia(p, base, what) {
  const start = Date.now();
  const b = base || { video: {}, audio: {} };
  let s;
  let firstFrameMs = null;
  for (;;) {
    s = await stats(p);
    const f = num(s.video.framesDecoded) - num(b.video.framesDecoded);
    const a = num(s.audio.packetsReceived) - num(b.audio.packetsReceived);
    if (f > 0 && firstFrameMs === null) firstFrameMs = Date.now() - start;
    if (f >= FRAMES && a >= AUDIO_PACKETS) break;
    if (Date.now() - start > WAIT_MS) {
      throw new Error(
        `${p.label} ${what}: after ${WAIT_MS} ms framesDecoded +${f} (need ${FRAMES}), audio packetsReceived +${a} ` +
          `(need ${AUDIO_PACKETS}); video ${JSON.stringify(s.video)} audio ${JSON.stringify(s.audio)} ` +
          `pc ${s.connectionState}/${s.iceConnectionState} pair ${JSON.stringify(s.pair)}`,
      );
    }
    await sleep(200);
  }
  const reached = Date.now() - start;
  const WINDOW = 2000;
  await sleep(WINDOW);
  const s2 = await stats(p);
  const df = num(s2.video.framesDecoded) - num(s.video.framesDecoded);
  const da = num(s2.audio.packetsReceived) - num(s.audio.packetsReceived);
  if (df < 10 || da < 25) {
    throw new Error(
      `${p.label} ${what}: reached ${FRAMES} frames but then stalled: +${df} frames, +${da} audio packets in ${WINDOW} ms ` +
        `(video ${JSON.stringify(s2.video)}, audio ${JSON.stringify(s2.audio)})`,
    );
  }
  const v = s2.video;
  const summary =
    `${p.label}: first frame after ${firstFrameMs} ms, +${FRAMES} frames after ${reached} ms, then ` +
    `${((df * 1000) / WINDOW).toFixed(0)} fps / ${((da * 1000) / WINDOW).toFixed(0)} audio pkt/s; ` +
    `${v.codec} ${v.frameWidth}x${v.frameHeight} framesDecoded=${v.framesDecoded} keyFramesDecoded=${v.keyFramesDecoded} ` +
    `lost=${num(v.packetsLost)} nack=${num(v.nackCount)} pli=${num(v.pliCount)} freezes=${num(v.freezeCount)}; ` +
    `audio ${s2.audio.codec} packets=${s2.audio.packetsReceived} lost=${num(s2.audio.packetsLost)}`;
  log(`  ${summary}`);
  return { stats: s2, summary, firstFrameMs };
}

async function dumpPages(tag) {
  for (const p of res.pages) {
    try {
      const [summary, raw, events] = await Promise.all([
        stats(p),
        p.page.evaluate(() => window.e2e.rawStats()),
        p.page.evaluate(() => window.e2e.events()),
      ]);
      writeOut(`${tag}-${p.label}-stats.json`, { summary, events, raw });
      console.log(`    ${p.label}: ${JSON.stringify(summary)}`);
      console.log(`    ${p.label} events: ${events.map((e) => `${e.t}ms#${e.pc} ${e.ev}${e.detail !== undefined ? '=' + JSON.stringify(e.detail) : ''}`).join(', ')}`);
    } catch (e) {
      console.log(`    ${p.label}: cannot read stats: ${e.message}`);
    }
  }
}

function parseMetrics(text) {
  const out = {}; // name -> [{labels, value}]
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = line.match(/^([a-zA-Z_:][\w:]*)(?:\{([^}]*)\})?\s+(\S+)/);
    if (!m) continue;
    (out[m[1]] ||= []).push({ labels: m[2] || '', value: Number(m[3]) });
  }
  return out;
}
const metricSum = (m, name) => (m[name] || []).reduce((a, x) => a + x.value, 0);

async function scrape() {
  const r = await fetch(`${res.hawker.metrics}/metrics`);
  if (r.status !== 200) throw new Error(`GET /metrics: ${r.status}`);
  const text = await r.text();
  return { text, m: parseMetrics(text) };
}

// ------------------------------------------------------------------------------------------
// aiortc, an independent WebRTC stack (tests/interop/aiortc_peer.py; scripts/test.sh installs it)
// ------------------------------------------------------------------------------------------

const AIORTC_PYTHON =
  process.env.HAWKER_AIORTC_PYTHON || path.join(REPO, 'target', 'interop', 'aiortc-venv', 'bin', 'python');
const aiortcReady = () =>
  spawnSync(AIORTC_PYTHON, ['-c', 'import aiortc, av'], { stdio: 'ignore' }).status === 0;

// Runs the aiortc peer with `args`; resolves to its JSON report (bounded by `ms`).
function runAiortc(args, ms) {
  return new Promise((resolve, reject) => {
    const proc = spawn(AIORTC_PYTHON, [path.join(REPO, 'tests', 'interop', 'aiortc_peer.py'), ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    proc.stdout.on('data', (d) => (out += d));
    proc.stderr.on('data', (d) => (err += d));
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`aiortc ${args[0]} timed out after ${ms} ms; stderr: ${err.slice(-2000)}`));
    }, ms);
    proc.on('exit', (code) => {
      clearTimeout(timer);
      const line = out.trim().split('\n').pop();
      try {
        resolve(JSON.parse(line));
      } catch {
        reject(new Error(`aiortc ${args[0]} exited ${code} without a report; stdout ${out} stderr ${err.slice(-2000)}`));
      }
    });
  });
}

// ------------------------------------------------------------------------------------------
// Checks
// ------------------------------------------------------------------------------------------

const results = [];
let aborted = false; // set by the global timeout: no further checks start

async function check(name, fn, { requires = [] } = {}) {
  if (aborted) return false;
  const missing = requires.filter((r) => !results.find((x) => x.name === r && x.ok));
  console.log('');
  if (missing.length) {
    log(`FAIL ${name}: not run, needs ${missing.join(', ')}`);
    results.push({ name, ok: false, detail: `not run (needs ${missing.join(', ')})` });
    return false;
  }
  log(`--- ${name}`);
  const started = Date.now();
  try {
    const detail = await fn();
    if (aborted) return false;
    const secs = ((Date.now() - started) / 1000).toFixed(1);
    results.push({ name, ok: true, secs, detail });
    log(`PASS ${name} (${secs} s)`);
    return true;
  } catch (e) {
    if (aborted) return false;
    const secs = ((Date.now() - started) / 1000).toFixed(1);
    results.push({ name, ok: false, secs, detail: e.message });
    log(`FAIL ${name} (${secs} s): ${e.message}`);
    console.log('  page state at failure (full dumps in the out dir):');
    await dumpPages(`fail-${name}`);
    if (res.hawker) {
      console.log(`  hawker log tail (full log: ${path.join(opts.out, 'hawker.log')}):`);
      for (const l of res.hawker.logTail.slice(-40)) console.log(`    | ${l}`);
    }
    return false;
  }
}

function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}

async function main() {
  // ---- setup (fatal on failure) ----
  if (!fs.existsSync(CHROMIUM)) throw new Error(`no browser at ${CHROMIUM} (apt-get install chromium, or set CHROMIUM_PATH)`);
  const bin = path.resolve(opts.hawker || buildHawker());
  if (!fs.existsSync(bin)) throw new Error(`no hawker binary at ${bin}`);
  // Bounds the test itself (not the build above).
  const globalTimer = setTimeout(() => {
    aborted = true;
    console.log('');
    log(`FAIL global-timeout: the run exceeded HAWKER_E2E_TIMEOUT_MS=${TIMEOUT_MS} ms; stopping`);
    results.push({ name: 'global-timeout', ok: false, detail: `run exceeded ${TIMEOUT_MS} ms` });
    finish(1);
  }, TIMEOUT_MS);
  res.staticServer = await startStaticServer();
  const staticBase = `http://127.0.0.1:${res.staticServer.address().port}`;
  log(`static pages at ${staticBase} (cross-origin to hawker: exercises CORS)`);
  const h = await startHawker(bin);
  res.browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
  log(`browser: ${CHROMIUM} ${res.browser.version()}`);

  const LIVE = 'e2e-live';
  const EARLY = 'e2e-early';
  const tokens = {
    [LIVE]: hawkerToken(bin, h.cfgPath, LIVE, 'publisher'),
    [EARLY]: hawkerToken(bin, h.cfgPath, EARLY, 'publisher'),
  };
  log(`publisher tokens from \`hawker token --config ... --role publisher\` for ${LIVE}, ${EARLY}`);
  // A viewer may wait for a show that exists but is not live yet; an anonymous WHEP never
  // creates one. The platform creates the show ahead of time through the REST API.
  {
    const admin = hawkerToken(bin, h.cfgPath, '*', 'admin');
    const r = await fetch(`${h.http}/api/v1/shows`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${admin}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ id: EARLY, title: 'Viewers first' }),
    });
    if (r.status !== 201) throw new Error(`POST /api/v1/shows ${EARLY}: ${r.status} ${await r.text()}`);
    log(`show ${EARLY} created ahead of its seller (POST /api/v1/shows → 201)`);
  }
  const whip = (s) => `${h.http}/whip/${s}`;
  const whep = (s) => `${h.http}/whep/${s}`;

  let pub1, v1, v2, pub2, v3;

  await check('publisher-first', async () => {
    pub1 = await newPage('pub1', staticBase);
    await publish(pub1, whip(LIVE), tokens[LIVE]);
    await sleep(500);
    const ps = await stats(pub1);
    log(`  pub1 sending: ${ps.video.codec} ${ps.video.frameWidth}x${ps.video.frameHeight} framesEncoded=${ps.video.framesEncoded} (${ps.video.encoderImplementation}), audio ${ps.audio.codec} packetsSent=${ps.audio.packetsSent}`);
    v1 = await newPage('v1', staticBase);
    v2 = await newPage('v2', staticBase);
    await Promise.all([view(v1, whep(LIVE)), view(v2, whep(LIVE))]);
    const [r1, r2] = await Promise.all([waitMedia(v1, null, 'publisher-first'), waitMedia(v2, null, 'publisher-first')]);
    return `${r1.summary} | ${r2.summary}`;
  });

  await check(
    'publisher-reconnect',
    async () => {
      const before = await Promise.all([stats(v1), stats(v2)]);
      const status = await pub1.page.evaluate(() => window.e2e.hangUp());
      assert(status === 200, `DELETE of the WHIP session answered ${status}, expected 200`);
      log('  pub1: WHIP session DELETEd (200), peer connection closed');
      await sleep(1500);
      const gap = await Promise.all([stats(v1), stats(v2)]);
      for (const [i, v] of [v1, v2].entries()) {
        log(`  ${v.label} during the gap: +${num(gap[i].video.framesDecoded) - num(before[i].video.framesDecoded)} frames, pc ${gap[i].connectionState}`);
      }
      const { m } = await scrape();
      log(`  metrics while off air: hawker_shows_live=${metricSum(m, 'hawker_shows_live')}`);
      await publish(pub1, whip(LIVE), tokens[LIVE]);
      const after = await Promise.all([waitMedia(v1, gap[0], 'after reconnect'), waitMedia(v2, gap[1], 'after reconnect')]);
      for (const [i, v] of [v1, v2].entries()) {
        const a = after[i].stats;
        assert(a.connectionState === 'connected', `${v.label} connectionState ${a.connectionState}`);
        assert(a.signalingState === 'stable', `${v.label} signalingState ${a.signalingState}`);
        assert(a.tracks === before[i].tracks, `${v.label} got new track events (${before[i].tracks} -> ${a.tracks})`);
        assert(
          a.negotiationNeeded === before[i].negotiationNeeded,
          `${v.label} fired negotiationneeded again (${before[i].negotiationNeeded} -> ${a.negotiationNeeded})`,
        );
        const evs = await v.page.evaluate(() => window.e2e.events());
        const states = evs.filter((e) => e.ev === 'connectionstate').map((e) => e.detail);
        assert(states.join(',') === 'connecting,connected', `${v.label} connection states ${states.join(',')}`);
        log(`  ${v.label}: no renegotiation; inbound video SSRC ${before[i].video.ssrcs} -> ${a.video.ssrcs} (${a.video.entries} inbound-rtp video entries)`);
      }
      return after.map((x) => x.summary).join(' | ');
    },
    { requires: ['publisher-first'] },
  );

  await check('viewer-first', async () => {
    v3 = await newPage('v3', staticBase);
    await view(v3, whep(EARLY));
    await sleep(2000);
    const idle = await stats(v3);
    log(`  v3 before the publisher: framesDecoded=${num(idle.video.framesDecoded)}, audio packets=${num(idle.audio.packetsReceived)}, pc ${idle.connectionState}`);
    assert(idle.connectionState === 'connected', `v3 connectionState ${idle.connectionState} while waiting for the publisher`);
    pub2 = await newPage('pub2', staticBase);
    await publish(pub2, whip(EARLY), tokens[EARLY]);
    const r = await waitMedia(v3, idle, 'viewer-first');
    return r.summary;
  });

  // Chromium and aiortc, both ways. Without aiortc installed the checks fail under CI and are
  // skipped (with a line saying so) otherwise.
  const withAiortc = aiortcReady();
  if (!withAiortc && !process.env.CI) {
    log(`SKIP chromium-to-aiortc, aiortc-to-chromium: no aiortc at ${AIORTC_PYTHON} (scripts/test.sh installs it)`);
  } else {
    await check(
      'chromium-to-aiortc',
      async () => {
        assert(withAiortc, `no aiortc at ${AIORTC_PYTHON}`);
        const r = await runAiortc(['view', whep(LIVE), '15'], 40000);
        log(`  aiortc viewer: ${JSON.stringify(r)}`);
        assert(r.status === 201, `WHEP answered ${r.status}`);
        assert(r.frames >= FRAMES, `aiortc decoded ${r.frames} frames of Chromium's stream (need ${FRAMES})`);
        assert(r.audio_frames >= 20, `aiortc decoded ${r.audio_frames} audio frames`);
        assert(r.delete === 200, `aiortc's DELETE answered ${r.delete}`);
        return `aiortc decoded ${r.frames} frames ${r.width}x${r.height}, first after ${r.first_frame_s} s`;
      },
      { requires: ['publisher-first'] },
    );
    await check('aiortc-to-chromium', async () => {
      assert(withAiortc, `no aiortc at ${AIORTC_PYTHON}`);
      const AIO = 'e2e-aiortc';
      const token = hawkerToken(bin, h.cfgPath, AIO, 'publisher');
      const live0 = metricSum((await scrape()).m, 'hawker_shows_live');
      const publisher = runAiortc(['publish', whip(AIO), token, '12', 'vp8'], 45000);
      // Watch once the show is live (aiortc's WHIP made it so).
      const deadline = Date.now() + CONNECT_MS;
      while (metricSum((await scrape()).m, 'hawker_shows_live') <= live0) {
        assert(Date.now() < deadline, `the aiortc publisher did not make ${AIO} live within ${CONNECT_MS} ms`);
        await sleep(200);
      }
      const v4 = await newPage('v4', staticBase);
      await view(v4, whep(AIO));
      const got = await waitMedia(v4, null, 'aiortc-to-chromium');
      const w = got.stats.video;
      assert(w.frameWidth === 320 && w.frameHeight === 240, `Chromium decodes aiortc's 320x240, got ${w.frameWidth}x${w.frameHeight}`);
      const st = await v4.page.evaluate(() => window.e2e.hangUp());
      assert(st === 200, `Chromium viewer's DELETE answered ${st}`);
      const p = await publisher;
      log(`  aiortc publisher: ${JSON.stringify(p)}`);
      assert(p.status === 201 && p.connected === true && p.codec === 'VP8', `aiortc publisher ${JSON.stringify(p)}`);
      assert(p.delete === 200, `aiortc publisher's DELETE answered ${p.delete}`);
      return got.summary;
    });
  }

  await check('metrics', async () => {
    const { text, m } = await scrape();
    writeOut('metrics.txt', text);
    const show = (name) => {
      const rows = m[name] || [];
      const parts = rows.filter((r) => r.value !== 0).map((r) => `${r.labels || '-'}=${r.value}`);
      log(`  ${name} = ${metricSum(m, name)}${parts.length > 1 ? `  (${parts.join(' ')})` : ''}`);
    };
    for (const name of [
      'hawker_peers',
      'hawker_shows_live',
      'hawker_media_packets_in_total',
      'hawker_media_keyframes_in_total',
      'hawker_media_packets_forwarded_total',
      'hawker_media_packets_dropped_total',
      'hawker_media_datagrams_out_total',
      'hawker_media_bytes_in_total',
      'hawker_media_bytes_out_total',
      'hawker_media_nacks_total',
      'hawker_media_viewer_keyframe_requests_total',
      'hawker_media_publisher_plis_total',
      'hawker_media_garbage_total',
      'hawker_media_send_errors_total',
      'hawker_http_requests_total',
    ]) {
      show(name);
    }
    assert(metricSum(m, 'hawker_media_packets_in_total') > 0, 'hawker_media_packets_in_total is 0');
    assert(metricSum(m, 'hawker_media_packets_forwarded_total') > 0, 'hawker_media_packets_forwarded_total is 0');
    assert(metricSum(m, 'hawker_media_keyframes_in_total') > 0, 'hawker_media_keyframes_in_total is 0');
    assert(metricSum(m, 'hawker_media_send_errors_total') === 0, 'hawker_media_send_errors_total is not 0');
  });

  // Stats of every page while still connected, for the record.
  for (const p of res.pages) {
    try {
      writeOut(`final-${p.label}-stats.json`, {
        events: await p.page.evaluate(() => window.e2e.events()),
        raw: await p.page.evaluate(() => window.e2e.rawStats()),
      });
    } catch {}
  }
  await check('teardown', async () => {
    const statuses = [];
    for (const p of res.pages) {
      const st = await p.page.evaluate(() => window.e2e.hangUp());
      statuses.push(`${p.label}=${st ?? 'no session'}`);
      if (st === null) continue; // its POST never succeeded (a check above failed)
      assert(st === 200, `DELETE for ${p.label} answered ${st}, expected 200`);
    }
    log(`  DELETE: ${statuses.join(' ')}`);
    let m;
    const deadline = Date.now() + 5000;
    do {
      await sleep(200);
      m = (await scrape()).m;
    } while ((metricSum(m, 'hawker_peers') !== 0 || metricSum(m, 'hawker_shows_live') !== 0) && Date.now() < deadline);
    log(`  after DELETE: hawker_peers=${metricSum(m, 'hawker_peers')} hawker_shows_live=${metricSum(m, 'hawker_shows_live')}`);
    assert(metricSum(m, 'hawker_peers') === 0, `hawker_peers still ${metricSum(m, 'hawker_peers')} 5 s after every session was DELETEd`);
    assert(metricSum(m, 'hawker_shows_live') === 0, `hawker_shows_live still ${metricSum(m, 'hawker_shows_live')}`);
  });

  await res.browser.close();
  res.browser = null;

  await check('shutdown', async () => {
    const t = Date.now();
    h.proc.kill('SIGTERM');
    const r = await Promise.race([h.exited, sleep(10000).then(() => null)]);
    assert(r !== null, 'hawker still running 10 s after SIGTERM');
    log(`  hawker exited after ${Date.now() - t} ms: code ${r.code}, signal ${r.signal}`);
    assert(r.code === 0, `exit code ${r.code} (signal ${r.signal}), expected 0`);
  });

  clearTimeout(globalTimer);
  finish(results.every((r) => r.ok) ? 0 : 1);
}

let finishing = false;
async function finish(code) {
  if (finishing) return;
  finishing = true;
  const done = results.slice(); // checks still in flight (global timeout) are not counted
  writeOut('console.log', res.console.join('\n') + '\n');
  try {
    if (res.browser) await Promise.race([res.browser.close(), sleep(5000)]);
  } catch {}
  if (res.staticServer) res.staticServer.close();
  if (res.hawker && res.hawker.proc.exitCode === null && res.hawker.proc.signalCode === null) {
    res.hawker.proc.kill('SIGKILL');
  }
  const passed = done.filter((r) => r.ok).length;
  const failed = done.length - passed;
  console.log('\n==== hawker browser e2e summary ====');
  for (const r of done) console.log(`${r.ok ? 'PASS' : 'FAIL'} ${r.name}${r.secs ? ` (${r.secs} s)` : ''}${r.ok ? '' : `: ${r.detail}`}`);
  if (code !== 0 && failed === 0) console.log('FAIL (see above)');
  console.log(`total ${((Date.now() - T0) / 1000).toFixed(1)} s; artifacts in ${opts.out}`);
  console.log(`browser: ${passed} passed, ${failed + (code !== 0 && failed === 0 ? 1 : 0)} failed`);
  process.exit(code);
}

main().catch((e) => {
  if (aborted || finishing) return;
  console.log('');
  log(`FAIL setup: ${e.stack || e.message}`);
  if (res.hawker) {
    console.log('  hawker log tail:');
    for (const l of res.hawker.logTail.slice(-40)) console.log(`    | ${l}`);
  }
  results.push({ name: 'setup', ok: false, detail: e.message });
  finish(1);
});
