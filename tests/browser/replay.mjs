#!/usr/bin/env node
// Real-browser proof that a replay puts each product card on the frame it appeared on live,
// and that seeking lands on a keyframe with the right card.
//
//   node tests/browser/replay.mjs [--hawker PATH] [--out DIR]
//
// The camera feed is frame_sync.mjs's (the same generator, copied below): every frame shows
// its own number as two rows of blocks that survive the codec. hawker runs with the keyframe
// cache off, so every viewer that joins makes the seller send a keyframe: the recording then
// has keyframes where the test wants them.
//
//   live     Chromium's fake camera plays the feed in the studio page (/studio/demo), which
//            goes live over WHIP. A viewer page joins (a keyframe), the seller shows three
//            products at seeded moments; the frame K the seller saw at each click is decoded
//            from the preview's pixels. Before the third product a second viewer joins (a
//            keyframe between the second and the third product). The seller ends the show.
//   replay   /watch/demo now offers the replay (catalog.json `replay: true`; the page passes
//            `replay: true` to the SDK). For each highlight, the first presented frame with
//            its card on screen (computed opacity, reduced motion) is decoded: S. Rule:
//            |S − K| <= 1 for every highlight, where K is the frame of the live click.
//   seek     window.hawkerWatch.seek(t) with t just before the third product's chapter
//            (state.replay.chapters, the seconds of each highlight): the first frame presented
//            after the seek has the RTP timestamp the snapshot names (the keyframe the server
//            started at), is readable, the viewer's keyFramesDecoded grew, and the card on it is
//            the product on screen at that frame live (the last highlight with K <= its
//            number); the third card then appears within one frame of its live K again.
//   bad input  WHEP ?replay=true&t=1000 → 400.
//
// Environment: CHROMIUM_PATH (default /usr/bin/chromium), HAWKER_BIN, REPLAY_SEED (default 5),
// HAWKER_E2E_RUST_LOG. Artifacts: OUT (default tests/browser/out/replay/): hawker.log,
// console.log, results.json, rounds.json, screenshots. Exit status non-zero on any failure.
// Takes about a minute.

import { chromium } from 'playwright-core';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '..', '..');

const USAGE = 'usage: node tests/browser/replay.mjs [--hawker PATH] [--out DIR]';
const opts = { hawker: process.env.HAWKER_BIN || null, out: path.join(HERE, 'out', 'replay') };
for (let i = 2; i < process.argv.length; i++) {
  const a = process.argv[i];
  if (a === '--hawker') opts.hawker = process.argv[++i];
  else if (a === '--out') opts.out = process.argv[++i];
  else {
    console.error(`unknown argument ${a}\n${USAGE}`);
    process.exit(2);
  }
}
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const SEED = Number(process.env.REPLAY_SEED || 5);
const random = (() => {
  let a = SEED >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
})();
const RUST_LOG = process.env.HAWKER_E2E_RUST_LOG || 'hawker=info,warn';

// The generated camera feed (as in frame_sync.mjs).
const W = 640;
const H = 360;
const FPS = 30;
const FRAMES = 300; // 10 s, then Chromium loops the file: frame numbers are mod FRAMES
const BITS = 12;
const BLOCK = 44; // px, square blocks
const X0 = (W - BITS * BLOCK) / 2;
const ROW1 = 246; // top of the number row
const ROW2 = ROW1 + BLOCK + 8; // top of the complement row

const BASE_ARGS = [
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
  '--autoplay-policy=no-user-gesture-required',
];

const T0 = Date.now();
const since = () => `${((Date.now() - T0) / 1000).toFixed(1).padStart(6)}s`;
const log = (m) => console.log(`[${since()}] ${m}`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

fs.rmSync(opts.out, { recursive: true, force: true });
fs.mkdirSync(opts.out, { recursive: true });
const writeOut = (name, data) =>
  fs.writeFileSync(path.join(opts.out, name), typeof data === 'string' ? data : JSON.stringify(data, null, 2));

const res = {
  tmp: fs.mkdtempSync(path.join(os.tmpdir(), 'hawker-replay-')),
  hawker: null,
  browsers: [],
  console: [],
  // Uncaught exceptions and console errors of any page: each one fails the run.
  pageErrors: [],
  // Session URLs the test deletes on purpose (the reconnect check).
  deletedByTest: new Set(),
};
let failures = 0;
const results = [];

function cleanup() {
  if (res.hawker && res.hawker.proc.exitCode === null && res.hawker.proc.signalCode === null) {
    try {
      res.hawker.proc.kill('SIGKILL');
    } catch {}
  }
  fs.rmSync(res.tmp, { recursive: true, force: true });
}
process.on('exit', cleanup);
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    console.error(`received ${sig}, stopping`);
    process.exit(130);
  });
}

async function check(name, fn) {
  const t = Date.now();
  log(`---- ${name}`);
  try {
    const detail = await fn();
    results.push({ name, ok: true, ms: Date.now() - t });
    log(`PASS ${name} (${((Date.now() - t) / 1000).toFixed(1)} s)${detail ? `: ${detail}` : ''}`);
    return true;
  } catch (e) {
    failures++;
    results.push({ name, ok: false, ms: Date.now() - t, error: String(e && e.stack ? e.stack : e) });
    log(`FAIL ${name}: ${e && e.stack ? e.stack : e}`);
    return false;
  }
}

function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}


const SEGMENTS = ['abcdef', 'bc', 'abdeg', 'abcdg', 'bcfg', 'acdfg', 'acdefg', 'abc', 'abcdefg', 'abcdfg'];

function makeY4m(file) {
  const ySize = W * H;
  const cSize = (W / 2) * (H / 2);
  const header = Buffer.from(`YUV4MPEG2 W${W} H${H} F${FPS}:1 Ip A1:1 C420jpeg\n`);
  const frameHeader = Buffer.from('FRAME\n');
  // Background: a calm slate-to-plum gradient (full-range-ish luma 40..95).
  const bgY = Buffer.alloc(ySize);
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) bgY[y * W + x] = 40 + Math.round((55 * (x + y)) / (W + H));
  const bgU = Buffer.alloc(cSize, 150);
  const bgV = Buffer.alloc(cSize, 140);
  const fd = fs.openSync(file, 'w');
  fs.writeSync(fd, header);
  const Y = Buffer.alloc(ySize);
  const U = Buffer.alloc(cSize);
  const V = Buffer.alloc(cSize);
  const rect = (x0, y0, w, h, luma, neutral = true) => {
    for (let y = Math.max(0, y0); y < Math.min(H, y0 + h); y++) Y.fill(luma, y * W + Math.max(0, x0), y * W + Math.min(W, x0 + w));
    if (neutral) {
      for (let y = Math.max(0, y0 >> 1); y < Math.min(H / 2, (y0 + h + 1) >> 1); y++) {
        U.fill(128, y * (W / 2) + Math.max(0, x0 >> 1), y * (W / 2) + Math.min(W / 2, (x0 + w + 1) >> 1));
        V.fill(128, y * (W / 2) + Math.max(0, x0 >> 1), y * (W / 2) + Math.min(W / 2, (x0 + w + 1) >> 1));
      }
    }
  };
  const digit = (d, x, y, w, h, t) => {
    const s = SEGMENTS[d];
    const half = Math.floor(h / 2);
    if (s.includes('a')) rect(x, y, w, t, 235);
    if (s.includes('b')) rect(x + w - t, y, t, half + t / 2, 235);
    if (s.includes('c')) rect(x + w - t, y + half - t / 2, t, h - half + t / 2, 235);
    if (s.includes('d')) rect(x, y + h - t, w, t, 235);
    if (s.includes('e')) rect(x, y + half - t / 2, t, h - half + t / 2, 235);
    if (s.includes('f')) rect(x, y, t, half + t / 2, 235);
    if (s.includes('g')) rect(x, y + half - t / 2, w, t, 235);
  };
  for (let n = 0; n < FRAMES; n++) {
    bgY.copy(Y);
    bgU.copy(U);
    bgV.copy(V);
    // Progress bar along the top (motion, and a glance at the loop position).
    rect(0, 0, Math.round(((n + 1) * W) / FRAMES), 8, 200, false);
    // Big digits for humans: 3 digits, centred.
    const dw = 70;
    const dh = 130;
    const gap = 24;
    const dx = (W - (3 * dw + 2 * gap)) / 2;
    const str = String(n).padStart(3, '0');
    for (let i = 0; i < 3; i++) digit(Number(str[i]), dx + i * (dw + gap), 58, dw, dh, 18);
    // The machine-readable number: a dark plate, the bits, then their complement.
    rect(X0 - 12, ROW1 - 12, BITS * BLOCK + 24, 2 * BLOCK + 8 + 24, 16);
    for (let b = 0; b < BITS; b++) {
      const bit = (n >> (BITS - 1 - b)) & 1;
      rect(X0 + b * BLOCK + 3, ROW1, BLOCK - 6, BLOCK, bit ? 235 : 16);
      rect(X0 + b * BLOCK + 3, ROW2, BLOCK - 6, BLOCK, bit ? 16 : 235);
    }
    fs.writeSync(fd, frameHeader);
    fs.writeSync(fd, Y);
    fs.writeSync(fd, U);
    fs.writeSync(fd, V);
  }
  fs.closeSync(fd);
}

/** The geometry the in-page decoder needs (normalised to the frame). */
const GEOM = {
  bits: BITS,
  xs: Array.from({ length: BITS }, (_, b) => (X0 + b * BLOCK + BLOCK / 2) / W),
  y1: (ROW1 + BLOCK / 2) / H,
  y2: (ROW2 + BLOCK / 2) / H,
  r: 8 / W, // sampling half-size, as a fraction of the width
};

/** Browser side: install `window.__fs.decode(source)` → frame number or null. */
function installDecoder(geom) {
  const c = document.createElement('canvas');
  c.width = 320;
  c.height = 180;
  const g = c.getContext('2d', { willReadFrequently: true });
  const decode = (source) => {
    g.drawImage(source, 0, 0, c.width, c.height);
    const d = g.getImageData(0, 0, c.width, c.height).data;
    const rr = Math.max(1, Math.round(geom.r * c.width));
    const lum = (fx, fy) => {
      const cx = Math.round(fx * c.width);
      const cy = Math.round(fy * c.height);
      let s = 0;
      let k = 0;
      for (let y = cy - rr; y <= cy + rr; y++) {
        for (let x = cx - rr; x <= cx + rr; x++) {
          const i = (y * c.width + x) * 4;
          s += 0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2];
          k++;
        }
      }
      return s / k;
    };
    let v = 0;
    for (let b = 0; b < geom.bits; b++) {
      const a = lum(geom.xs[b], geom.y1) > 128;
      const inv = lum(geom.xs[b], geom.y2) > 128;
      if (a === inv) return null; // the complement does not match: smeared frame
      v = v * 2 + (a ? 1 : 0);
    }
    return v;
  };
  window.__fs = { decode };
}

// Circular frame difference in (−FRAMES/2, FRAMES/2].
const fdiff = (a, b) => {
  let d = (((a - b) % FRAMES) + FRAMES) % FRAMES;
  if (d > FRAMES / 2) d -= FRAMES;
  return d;
};


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

function hawkerBin() {
  if (opts.hawker) return path.resolve(opts.hawker);
  log('building hawker: cargo build --release --bin hawker');
  const r = spawnSync('cargo', ['build', '--release', '--bin', 'hawker'], { cwd: REPO, stdio: 'inherit' });
  if (r.status !== 0) throw new Error(`cargo build failed (status ${r.status})`);
  const target = process.env.CARGO_TARGET_DIR ? path.resolve(REPO, process.env.CARGO_TARGET_DIR) : path.join(REPO, 'target');
  return path.join(target, 'release', 'hawker');
}

async function startHawker(bin) {
  for (let attempt = 1; ; attempt++) {
    const httpPort = await freePort();
    const metricsPort = await freePort();
    const cfgPath = path.join(res.tmp, 'hawker.toml');
    const cfg = [
      `data_dir = ${JSON.stringify(path.join(res.tmp, 'data'))}`,
      '[http]',
      `listen = "127.0.0.1:${httpPort}"`,
      '[metrics]',
      `listen = "127.0.0.1:${metricsPort}"`,
      '[media]',
      'shards = 2',
      'bind_ip = "127.0.0.1"',
      // Every joining viewer asks the seller for a keyframe: the recording gets keyframes
      // where the test makes viewers join.
      'keyframe_cache_max_age = "0s"',
      '[auth]',
      'anonymous_viewers = true',
      '[shows]',
      'seed_demo = true',
      '',
    ].join('\n');
    fs.writeFileSync(cfgPath, cfg);
    const logFile = fs.createWriteStream(path.join(opts.out, 'hawker.log'), { flags: attempt === 1 ? 'w' : 'a' });
    const proc = spawn(bin, ['serve', '--config', cfgPath], {
      cwd: res.tmp,
      env: { ...process.env, RUST_LOG, NO_COLOR: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const h = {
      proc,
      bin,
      cfgPath,
      http: `http://127.0.0.1:${httpPort}`,
      tail: [],
      exited: new Promise((resolve) => {
        proc.on('exit', (code, signal) => resolve({ code, signal }));
        proc.on('error', (e) => resolve({ code: null, signal: null, error: String(e) }));
      }),
    };
    for (const s of [proc.stdout, proc.stderr]) {
      s.on('data', (chunk) => {
        logFile.write(chunk);
        for (const l of chunk.toString().split('\n')) if (l) h.tail.push(l);
        if (h.tail.length > 300) h.tail.splice(0, h.tail.length - 300);
      });
    }
    res.hawker = h;
    let exited = null;
    h.exited.then((e) => (exited = e));
    const deadline = Date.now() + 20000;
    while (exited === null && Date.now() < deadline) {
      await sleep(100);
      try {
        if ((await fetch(`${h.http}/healthz`)).status === 200) return h;
      } catch {}
    }
    if (exited === null) proc.kill('SIGKILL');
    const tail = h.tail.slice(-20).join('\n');
    if (attempt < 3 && /listen/i.test(tail)) continue;
    throw new Error(`hawker did not start: ${JSON.stringify(exited)}\n${tail}`);
  }
}

function token(show, role) {
  const r = spawnSync(res.hawker.bin, ['token', '--config', res.hawker.cfgPath, '--show', show, '--role', role], {
    cwd: res.tmp,
    encoding: 'utf8',
    env: { ...process.env, RUST_LOG: 'warn' },
  });
  if (r.status !== 0) throw new Error(`hawker token failed: ${r.stderr}`);
  return r.stdout.trim();
}


async function launch(extraArgs) {
  const b = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: [...BASE_ARGS, ...extraArgs] });
  res.browsers.push(b);
  return b;
}

async function openPage(browser, label, url, contextOpts) {
  const ctx = await browser.newContext(contextOpts);
  const page = await ctx.newPage();
  page.on('console', (m) => {
    const line = `[${since()}] [${label}] ${m.type()}: ${m.text()}`;
    res.console.push(line);
    // A resource the test itself deleted answers 404 when the SDK cleans it up: expected.
    const gone = /^Failed to load resource: .* 404/.test(m.text()) && res.deletedByTest.has(m.location().url);
    if (m.type() === 'error' && !gone) res.pageErrors.push(line);
  });
  page.on('pageerror', (e) => {
    const line = `[${since()}] [${label}] pageerror: ${e.message}`;
    res.console.push(line);
    res.pageErrors.push(line);
  });
  page.on('response', (r) => {
    if (r.status() >= 400) res.console.push(`[${since()}] [${label}] http ${r.status()} ${r.request().method()} ${r.url()}`);
  });
  const resp = await page.goto(url);
  assert(resp && resp.status() === 200, `${label}: GET ${url} → ${resp && resp.status()}`);
  return page;
}

const studioDecodeAndClick = (sku) => {
  const v = document.getElementById('preview');
  const t = performance.now();
  const k = window.__fs.decode(v);
  const c = window.hawkerStudio.publisher.clock;
  const dbg = { age: t - c.at, sinceDisplay: t - (c.md && c.md.expectedDisplayTime), sincePres: t - (c.md && c.md.presentationTime) };
  const btn = document.querySelector(`.show-now[data-sku="${sku}"]`);
  if (!btn) return { error: `no Show-now button for ${sku}` };
  if (btn.disabled) return { error: 'Show-now button disabled' };
  btn.click();
  const sent = window.hawkerStudio.lastAction;
  return { k, sent, t, label: btn.textContent, dbg };
};


/** Studio: remember the decoded number of each presented preview frame by its capture time. */
function installStudioProbe() {
  const v = document.getElementById('preview');
  const byCapture = new Map();
  let frames = 0;
  let decoded = 0;
  let withCaptureTime = 0;
  let firstT = null;
  let lastT = null;
  const cb = (_now, md) => {
    frames++;
    lastT = performance.now();
    if (firstT === null) firstT = lastT;
    const n = window.__fs.decode(v);
    if (n !== null) decoded++;
    if (typeof md.captureTime === 'number') {
      withCaptureTime++;
      byCapture.set(Math.round(performance.timeOrigin + md.captureTime), n);
      if (byCapture.size > 900) byCapture.delete(byCapture.keys().next().value);
    }
    v.requestVideoFrameCallback(cb);
  };
  v.requestVideoFrameCallback(cb);
  window.__probe = {
    stats: () => ({ frames, decoded, withCaptureTime, ms: lastT - firstT, w: v.videoWidth, h: v.videoHeight }),
    frameAt: (captureMs) => {
      for (const d of [0, -1, 1]) if (byCapture.has(captureMs + d)) return byCapture.get(captureMs + d);
      return undefined;
    },
  };
}

/** Key video numbers of a page's peer connection (outbound for the studio, inbound for viewers). */
async function rtcStats(page, role) {
  return page.evaluate(async (role) => {
    const pc = role === 'studio' ? window.hawkerStudio.publisher && window.hawkerStudio.publisher.pc : window.hawkerWatch.viewer.pc;
    if (!pc) return null;
    const all = new Map();
    (await pc.getStats()).forEach((r) => all.set(r.id, r));
    for (const r of all.values()) {
      if (r.kind !== 'video') continue;
      const codec = r.codecId && all.get(r.codecId) ? all.get(r.codecId).mimeType : null;
      if (r.type === 'outbound-rtp') {
        return {
          codec,
          size: `${r.frameWidth}x${r.frameHeight}`,
          fps: r.framesPerSecond,
          framesEncoded: r.framesEncoded,
          framesSent: r.framesSent,
          keyFramesEncoded: r.keyFramesEncoded,
          qualityLimitation: r.qualityLimitationReason,
        };
      }
      if (r.type === 'inbound-rtp') {
        return {
          codec,
          size: `${r.frameWidth}x${r.frameHeight}`,
          fps: r.framesPerSecond,
          framesReceived: r.framesReceived,
          framesDecoded: r.framesDecoded,
          framesDropped: r.framesDropped,
          freezes: r.freezeCount,
          jitterBufferMs: r.jitterBufferEmittedCount ? Math.round((1000 * r.jitterBufferDelay) / r.jitterBufferEmittedCount) : null,
          packetsLost: r.packetsLost,
        };
      }
    }
    return null;
  }, role);
}

async function waitFor(page, fn, arg, ms, what) {
  try {
    return await page.waitForFunction(fn, arg, { timeout: ms, polling: 50 }).then((h) => h.jsonValue());
  } catch (e) {
    throw new Error(`timed out after ${ms} ms waiting for ${what}`);
  }
}

/**
 * Replay viewer: every presented frame with its number, RTP timestamp and the card fully on
 * screen (computed opacity >= 0.99), and every snapshot the SDK revealed.
 */
function installReplayProbe() {
  const v = document.getElementById('video');
  const card = document.getElementById('card');
  const viewer = window.hawkerWatch.viewer;
  const frames = []; // {rtp, n, hid, t, pf}
  const snapshots = []; // {rtp_ts, replay, highlight, at}
  let ended = false;
  viewer.addEventListener('replay_ended', () => (ended = true));
  viewer.addEventListener('snapshot', (e) => {
    const s = e.detail;
    snapshots.push({ rtp_ts: s.rtp_ts, replay: s.replay, highlight: s.highlight, at: performance.now() });
  });
  const cb = (_now, md) => {
    const n = window.__fs.decode(v);
    const op = Number(getComputedStyle(card).opacity);
    const hid = op >= 0.99 && card.dataset.highlightId ? card.dataset.highlightId : null;
    frames.push({ rtp: md.rtpTimestamp, n, hid, t: performance.now(), pf: md.presentedFrames });
    if (frames.length > 4000) frames.shift();
    v.requestVideoFrameCallback(cb);
  };
  v.requestVideoFrameCallback(cb);
  window.__probe = {
    now: () => performance.now(),
    // The first frame presented after t0 with highlight `hid` on screen.
    first: (hid, t0) => frames.find((f) => f.t >= t0 && f.hid === hid) || null,
    // The first frame of a session presented after t0 (a frame re-presented when the video
    // element switches streams carries no RTP timestamp).
    firstAfter: (t0) => frames.find((f) => f.t >= t0 && typeof f.rtp === 'number') || null,
    count: (t0) => frames.filter((f) => f.t >= t0).length,
    snapshots: (t0) => snapshots.filter((s) => s.at >= t0),
    replay: () => viewer.state.replay,
    ended: () => ended,
    position: () => viewer.position(),
  };
}

/** The live card on screen at frame n: the last highlight clicked at a frame <= n. */
function liveCardAt(rounds, n) {
  let hid = null;
  for (const r of rounds) if (fdiff(n, r.k) >= 0) hid = r.hid;
  return hid;
}

// ------------------------------------------------------------------------------------------
// Main
// ------------------------------------------------------------------------------------------

async function main() {
  const y4m = path.join(res.tmp, 'frames.y4m');
  makeY4m(y4m);
  const bin = hawkerBin();
  const hk = await startHawker(bin);
  log(`hawker up at ${hk.http} (pid ${hk.proc.pid})`);
  const pubToken = token('demo', 'publisher');
  const adminToken = token('*', 'admin');

  const studioBrowser = await launch([`--use-file-for-fake-video-capture=${y4m}`]);
  const viewerBrowser = await launch(['--disable-features=WebRtcHideLocalIpsWithMdns']);
  const studio = await openPage(studioBrowser, 'studio', `${hk.http}/studio/demo#token=${pubToken}`, {
    viewport: { width: 1280, height: 800 },
  });
  const viewerOpts = { viewport: { width: 1280, height: 800 }, reducedMotion: 'reduce' };
  /** @type {{sku: string, k: number, hid: string, capture_ms: number}[]} */
  const rounds = [];

  const live = await check('live: the seller shows three products at known frames', async () => {
    await waitFor(studio, () => !document.getElementById('golive').disabled, null, 15000, 'the Go live button');
    await studio.click('#golive');
    await waitFor(studio, () => document.body.dataset.state === 'live', null, 20000, 'studio status Live');
    await waitFor(studio, () => document.querySelectorAll('.show-now:not([disabled])').length === 3, null, 10000, 'catalog');
    await studio.evaluate(installDecoder, GEOM);
    await studio.evaluate(installStudioProbe);
    // A live viewer joins: a keyframe, and the highlight ids as viewers get them.
    const liveViewer = await openPage(viewerBrowser, 'live-viewer', `${hk.http}/watch/demo`, viewerOpts);
    await waitFor(liveViewer, () => window.hawkerWatch && window.hawkerWatch.viewer.rtpTimestamp !== null, null, 30000, 'live viewer frames');
    const ids = [];
    await liveViewer.evaluate(() => {
      window.__ids = [];
      window.hawkerWatch.viewer.addEventListener('message', (e) => {
        if (e.detail.type === 'highlight') window.__ids.push({ id: e.detail.highlight_id, capture_ms: e.detail.capture_ms });
      });
    });
    const skus = ['lamp-1', 'mug-2', 'scarf-3'];
    let second = null;
    for (const [i, sku] of skus.entries()) {
      if (i === 2) {
        // A keyframe between the second and the third product, for the seek below.
        second = await openPage(viewerBrowser, 'live-viewer-2', `${hk.http}/watch/demo`, viewerOpts);
        await waitFor(second, () => window.hawkerWatch && window.hawkerWatch.viewer.rtpTimestamp !== null, null, 30000, 'second live viewer frames');
      }
      await sleep(1200 + random() * 1000);
      const r = await studio.evaluate(studioDecodeAndClick, sku);
      assert(!r.error, r.error);
      assert(r.k !== null, `${sku}: preview frame not decodable at click time`);
      const got = await waitFor(liveViewer, (c) => window.__ids.find((m) => m.capture_ms === c) || null, r.sent.capture_ms, 5000, `${sku}: highlight at the live viewer`);
      rounds.push({ sku, k: r.k, hid: got.id, capture_ms: r.sent.capture_ms });
      ids.push(`${sku} ${got.id} at frame ${r.k}`);
    }
    await sleep(1500);
    await studio.click('#end');
    // 'ended' once the WHIP session is closed (DELETE) and POST /end answered.
    await waitFor(studio, () => document.body.dataset.state === 'ended', null, 8000, 'studio shows the show ended');
    // The studio's End show ends the show itself (with its publisher token): no admin call.
    const shown = await fetch(`${hk.http}/api/v1/shows/demo`, { headers: { Authorization: `Bearer ${adminToken}` } });
    const state = shown.ok ? (await shown.json()).state : `HTTP ${shown.status}`;
    assert(state === 'ended', `after End show the show is ${state}, not ended`);
    await liveViewer.context().close();
    await second.context().close();
    writeOut('rounds.json', rounds);
    return ids.join('; ');
  });
  if (!live) return;

  let page;
  let t0;
  const replayed = await check('replay: each card on the frame it appeared on live (±1)', async () => {
    const deadline = Date.now() + 10000;
    for (;;) {
      const info = await (await fetch(`${hk.http}/shows/demo/catalog.json`)).json();
      if (info.show.replay) break;
      assert(Date.now() < deadline, `catalog.json never offered the replay: ${JSON.stringify(info.show)}`);
      await sleep(200);
    }
    page = await openPage(viewerBrowser, 'replay-viewer', `${hk.http}/watch/demo`, viewerOpts);
    await waitFor(page, () => window.hawkerWatch && window.hawkerWatch.viewer.opts.replay === true, null, 10000, 'the page in replay mode');
    await page.evaluate(installDecoder, GEOM);
    await page.evaluate(installReplayProbe);
    t0 = await page.evaluate(() => window.__probe.now());
    const out = [];
    for (const r of rounds) {
      const f = await waitFor(page, ([hid, t]) => window.__probe.first(hid, t), [r.hid, t0], 30000, `replay card ${r.hid} (${r.sku})`);
      assert(f.n !== null, `${r.sku}: the frame the card appeared on is not readable`);
      const err = fdiff(f.n, r.k);
      r.replay = f.n;
      out.push(`${r.sku}: live ${r.k}, replay ${f.n} (${err >= 0 ? '+' : ''}${err})`);
      writeOut('rounds.json', rounds);
      assert(Math.abs(err) <= 1, `${r.sku}: card on frame ${f.n} in the replay, ${r.k} live`);
    }
    const badge = await page.evaluate(() => document.getElementById('live-badge').textContent);
    assert(badge === 'Replay', `badge says ${badge}`);
    await page.screenshot({ path: path.join(opts.out, 'replay.png') });
    return out.join('; ');
  });
  if (!replayed) return;

  await check('seek: lands on a keyframe with the card on screen at that moment', async () => {
    const info = await page.evaluate(() => window.__probe.replay());
    assert(info && info.chapters.length === 3, `chapters: ${JSON.stringify(info)}`);
    const third = info.chapters.find((c) => c.highlight_id === rounds[2].hid);
    assert(third, `no chapter for ${rounds[2].hid}: ${JSON.stringify(info.chapters)}`);
    const t = Math.max(0, third.t - 0.2);
    const stats = async () => page.evaluate(async () => {
      let k = 0;
      (await window.hawkerWatch.viewer.pc.getStats()).forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'video') k = s.keyFramesDecoded || 0;
      });
      return k;
    });
    // From the end of the replay, so every frame presented after the seek is the new session's.
    await waitFor(page, () => window.__probe.ended(), null, 15000, 'the end of the replay');
    await sleep(500);
    const mark = await page.evaluate(() => window.__probe.now());
    await page.evaluate((t) => window.hawkerWatch.seek(t), t);
    const first = await waitFor(page, (m) => window.__probe.firstAfter(m), mark, 15000, 'a frame after the seek');
    const snap = (await page.evaluate((m) => window.__probe.snapshots(m), mark))[0];
    assert(snap && snap.replay, 'no replay snapshot after the seek');
    // A viewer joined (a keyframe) between the second and the third product: the nearest
    // keyframe at or before t is after the second product's chapter.
    const second = info.chapters.find((c) => c.highlight_id === rounds[1].hid);
    assert(snap.replay.start <= t + 0.001 && snap.replay.start >= second.t, `started at ${snap.replay.start} for t=${t} (second product at ${second.t})`);
    assert(first.rtp === snap.rtp_ts, `first frame rtp ${first.rtp}, the snapshot's keyframe ${snap.rtp_ts}`);
    assert(first.n !== null, 'the first frame after the seek is not readable');
    const keyframes = await stats();
    assert(keyframes >= 1, `keyFramesDecoded ${keyframes} on the new session`);
    const want = liveCardAt(rounds, first.n);
    // The card is on screen from the snapshot; give the page a frame or two to paint it.
    const onScreen = await waitFor(page, ([m, n]) => {
      const f = window.__probe.firstAfter(m);
      return f ? { hid: f.hid, n: f.n } : null;
    }, [mark, first.n], 2000, 'the card after the seek');
    assert(onScreen.hid === want, `after the seek, frame ${first.n} shows card ${onScreen.hid}, live it was ${want}`);
    // The third card then comes on its live frame again.
    const f3 = await waitFor(page, ([hid, m]) => window.__probe.first(hid, m), [rounds[2].hid, mark], 15000, 'the third card after the seek');
    const err = fdiff(f3.n, rounds[2].k);
    assert(Math.abs(err) <= 1, `after the seek, ${rounds[2].sku} on frame ${f3.n}, live ${rounds[2].k}`);
    return `t=${t.toFixed(2)} → keyframe at ${snap.replay.start.toFixed(2)} s (frame ${first.n}, rtp ${first.rtp}), card ${onScreen.hid} (live ${want}); ${rounds[2].sku} on frame ${f3.n} (live ${rounds[2].k})`;
  });

  await check('bad input: a seek past the end is 400', async () => {
    // The offer is parsed first: a real one from the page.
    const offer = await page.evaluate(async () => {
      const pc = new RTCPeerConnection();
      pc.addTransceiver('video', { direction: 'recvonly' });
      pc.createDataChannel('events');
      await pc.setLocalDescription(await pc.createOffer());
      const sdp = pc.localDescription.sdp;
      pc.close();
      return sdp;
    });
    const r2 = await fetch(`${hk.http}/whep/demo?replay=true&t=1000`, {
      method: 'POST',
      headers: { 'content-type': 'application/sdp' },
      body: offer,
    });
    assert(r2.status === 400, `t=1000 → ${r2.status}: ${await r2.text()}`);
    return `t=1000 → ${r2.status}`;
  });

  await check('shut down', async () => {
    for (const b of res.browsers) await b.close();
    res.browsers = [];
    hk.proc.kill('SIGTERM');
    const r = await Promise.race([hk.exited, sleep(10000).then(() => null)]);
    assert(r && r.code === 0, `hawker exit ${JSON.stringify(r)}`);
  });
}

try {
  await main();
} catch (e) {
  failures++;
  log(`FAIL (setup): ${e && e.stack ? e.stack : e}`);
} finally {
  writeOut('console.log', res.console.join('\n') + '\n');
  writeOut('results.json', results);
  if (res.pageErrors.length) {
    failures++;
    results.push({ name: 'no page errors', ok: false, error: res.pageErrors.join('\n') });
    log(`FAIL no page errors: ${res.pageErrors.length} page/console error(s):\n  ${res.pageErrors.slice(0, 20).join('\n  ')}`);
  }
  for (const b of res.browsers) await b.close().catch(() => {});
  if (failures && res.hawker) log(`hawker log tail:\n${res.hawker.tail.slice(-25).join('\n')}`);
  const passed = results.filter((r) => r.ok).length;
  log(`replay: ${passed} passed, ${results.length - passed} failed in ${((Date.now() - T0) / 1000).toFixed(1)} s`);
  process.exit(failures ? 1 : 0);
}
