#!/usr/bin/env node
// Real-browser proof that hawker's product events are frame-exact, plus the shop flow.
//
//   node tests/browser/frame_sync.mjs [--hawker PATH] [--out DIR]
//
// A generated camera feed (.y4m, 640x360, 30 fps, I420) shows its own frame number on every
// frame: two rows of 12 large black/white blocks (the number in binary, and its complement as
// a check) that survive VP8/H.264, plus big 7-segment digits for humans. Chromium's fake
// camera plays it in the studio page (/studio/demo), which goes live over WHIP with the SDK.
// Viewer pages (/watch/demo, a second Chromium) play it over WHEP.
//
//   frame-sync   ROUNDS times, at a random moment: read the frame number K shown in the
//                studio preview (decoded from its pixels), press "Show now". In the viewer,
//                find the first presented frame (requestVideoFrameCallback) on which the
//                product card is visible, and decode its frame number S from the pixels of
//                that very frame. Assert |S − K| <= 1 for every highlight and print the error
//                distribution, with diagnostics (capture_ms vs the preview frame, the event's
//                rtp_ts vs the RTP timestamp of frame K at the viewer, the hold time).
//                Then the same for "Hide" (card gone on the right frame).
//   shop         two viewers; each buys; the orders show up in the REST API
//                (GET /api/v1/shows/demo/orders) and in the studio feed; stock counts down on
//                both viewer pages; "N sold in the last minute"; a question reaches the studio.
//   screenshots  studio.png (1280x800) and viewer-phone.png (390x844), into OUT, or into
//                docs/screenshots/ with --update-screenshots.
//
// Environment: CHROMIUM_PATH (default /usr/bin/chromium), HAWKER_BIN, FRAME_SYNC_ROUNDS
// (default 12), HAWKER_E2E_RUST_LOG (default hawker=info,warn; server log in OUT/hawker.log),
// FRAME_SYNC_WATCH_QUERY (e.g. "?sync_delay=off"), FRAME_SYNC_MEDIA (extra [media] config
// lines separated by ';', e.g. 'keyframe_cache_max_age = "0s"').
// Artifacts: OUT (default tests/browser/out/frame_sync/): hawker.log, console.log,
// rounds.json, screenshots of every page. Exit status non-zero on any failure.

import { chromium } from 'playwright-core';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '..', '..');

// ------------------------------------------------------------------------------------------
// Options
// ------------------------------------------------------------------------------------------

const USAGE = 'usage: node tests/browser/frame_sync.mjs [--hawker PATH] [--out DIR] [--update-screenshots]';
const opts = { hawker: process.env.HAWKER_BIN || null, out: path.join(HERE, 'out', 'frame_sync'), updateScreenshots: false };
for (let i = 2; i < process.argv.length; i++) {
  const a = process.argv[i];
  if (a === '--hawker') opts.hawker = process.argv[++i];
  else if (a === '--out') opts.out = process.argv[++i];
  else if (a === '--update-screenshots') opts.updateScreenshots = true;
  else if (a === '-h' || a === '--help') {
    console.log(USAGE);
    process.exit(0);
  } else {
    console.error(`unknown argument ${a}\n${USAGE}`);
    process.exit(2);
  }
}
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const ROUNDS = Number(process.env.FRAME_SYNC_ROUNDS || 12);
const RUST_LOG = process.env.HAWKER_E2E_RUST_LOG || 'hawker=info,warn';
// Extra query for the viewer pages, e.g. "?sync_delay=off" to measure without the SDK's
// playout delay (see docs/sdk.md).
const WATCH_QUERY = process.env.FRAME_SYNC_WATCH_QUERY || '';
// docs/screenshots/ only with --update-screenshots (they are committed); else OUT.

// The generated camera feed.
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

// ------------------------------------------------------------------------------------------
// Output and resources
// ------------------------------------------------------------------------------------------

const T0 = Date.now();
const since = () => `${((Date.now() - T0) / 1000).toFixed(1).padStart(6)}s`;
const log = (m) => console.log(`[${since()}] ${m}`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

fs.rmSync(opts.out, { recursive: true, force: true });
fs.mkdirSync(opts.out, { recursive: true });
const writeOut = (name, data) =>
  fs.writeFileSync(path.join(opts.out, name), typeof data === 'string' ? data : JSON.stringify(data, null, 2));

const res = {
  tmp: fs.mkdtempSync(path.join(os.tmpdir(), 'hawker-frame-sync-')),
  hawker: null,
  browsers: [],
  console: [],
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

// ------------------------------------------------------------------------------------------
// The camera feed
// ------------------------------------------------------------------------------------------

// 7-segment digits: segments a b c d e f g.
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

// ------------------------------------------------------------------------------------------
// hawker
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
      // Extra [media] lines for diagnosis, e.g. FRAME_SYNC_MEDIA='keyframe_cache_max_age = "0s"'.
      ...(process.env.FRAME_SYNC_MEDIA ? process.env.FRAME_SYNC_MEDIA.split(';') : []),
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

// ------------------------------------------------------------------------------------------
// Browsers
// ------------------------------------------------------------------------------------------

async function launch(extraArgs) {
  const b = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: [...BASE_ARGS, ...extraArgs] });
  res.browsers.push(b);
  return b;
}

async function openPage(browser, label, url, contextOpts) {
  const ctx = await browser.newContext(contextOpts);
  const page = await ctx.newPage();
  page.on('console', (m) => res.console.push(`[${since()}] [${label}] ${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => res.console.push(`[${since()}] [${label}] pageerror: ${e.message}`));
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

const studioDecodeAndHide = () => {
  const v = document.getElementById('preview');
  const k = window.__fs.decode(v);
  document.getElementById('hide').click();
  return { k, sent: window.hawkerStudio.lastAction };
};

/** Studio: remember the decoded number of each presented preview frame by its capture time. */
function installStudioProbe() {
  const v = document.getElementById('preview');
  const byCapture = new Map();
  let frames = 0;
  let decoded = 0;
  let withCaptureTime = 0;
  const cb = (_now, md) => {
    frames++;
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
    stats: () => ({ frames, decoded, withCaptureTime, w: v.videoWidth, h: v.videoHeight }),
    frameAt: (captureMs) => {
      for (const d of [0, -1, 1]) if (byCapture.has(captureMs + d)) return byCapture.get(captureMs + d);
      return undefined;
    },
  };
}

/** Viewer: decode every presented frame; note on which frame each highlight appeared. */
function installViewerProbe() {
  const v = document.getElementById('video');
  const card = document.getElementById('card');
  const viewer = window.hawkerWatch.viewer;
  const frames = []; // {rtp, n, vis, hid, t}
  const firstVisible = new Map(); // highlight id → frame
  const hiddenAfter = new Map(); // highlight id → first frame without it, after it was visible
  const messages = []; // raw arrivals
  const reveals = []; // SDK deliveries
  let lastHid = null;
  let count = 0;
  let decoded = 0;
  viewer.addEventListener('message', (e) => {
    const m = e.detail;
    if (m.type === 'highlight' || m.type === 'unhighlight') {
      messages.push({ ...m, product: undefined, at: performance.now(), frameRtp: viewer.rtpTimestamp });
    }
  });
  for (const t of ['highlight', 'unhighlight']) {
    viewer.addEventListener(t, (e) => reveals.push({ type: t, id: e.detail.highlight_id, frame: e.detail.frame, at: performance.now() }));
  }
  const cb = (_now, md) => {
    count++;
    const n = window.__fs.decode(v);
    if (n !== null) decoded++;
    const vis = card.classList.contains('visible');
    const hid = vis ? card.dataset.highlightId : null;
    const f = { rtp: md.rtpTimestamp, n, vis, hid, t: performance.now(), pf: md.presentedFrames };
    frames.push(f);
    if (frames.length > 2400) frames.shift();
    if (hid && !firstVisible.has(hid)) firstVisible.set(hid, f);
    if (lastHid && lastHid !== hid && !hiddenAfter.has(lastHid)) hiddenAfter.set(lastHid, f);
    lastHid = hid;
    v.requestVideoFrameCallback(cb);
  };
  v.requestVideoFrameCallback(cb);
  window.__probe = {
    stats: () => ({ count, decoded, w: v.videoWidth, h: v.videoHeight, interval: viewer.frameInterval() }),
    first: (hid) => firstVisible.get(hid) || null,
    // Numbers of the frames presented just before the one presented at time t (oldest first).
    before: (t, k) => {
      const i = frames.findIndex((f) => f.t === t);
      return i < 0 ? [] : frames.slice(Math.max(0, i - k), i).map((f) => f.n);
    },
    hidden: (hid) => hiddenAfter.get(hid) || null,
    message: (captureMs, type) => messages.find((m) => m.capture_ms === captureMs && m.type === type) || null,
    reveal: (id, type) => reveals.find((r) => r.id === id && r.type === type) || null,
    // The RTP timestamp at which this viewer presented frame number n most recently before t.
    // The frame numbered n presented closest before `before` (and not more than 3 s before).
    rtpOf: (n, before) => {
      for (let i = frames.length - 1; i >= 0; i--) {
        const f = frames[i];
        if (f.t < before - 3000) break;
        if (f.n === n && f.t <= before) return f;
      }
      return null;
    },
    sync: () => ({ delay: viewer.syncDelayMs, late: viewer.lateEvents }),
    recent: (k) => frames.slice(-k),
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
 * Why the card appeared on frame `shown` when the seller acted on frame K: 'ok' (|shown − K|
 * <= 1), 'late' (the viewer presented K or later before the card), 'early', or 'skipped' (the
 * viewer never presented frames K..shown−1; the frames before the card are all before K).
 */
function verdict(prev, k, shown) {
  if (k === null || shown === null) return 'undecodable';
  const err = fdiff(shown, k);
  if (Math.abs(err) <= 1) return 'ok';
  if (err < -1) return 'early';
  const last = prev.filter((n) => n !== null).pop();
  if (last !== undefined && fdiff(last, k) < 0) return 'skipped';
  return 'late';
}

function histogram(values) {
  const h = new Map();
  for (const v of values) h.set(v, (h.get(v) || 0) + 1);
  return [...h.entries()].sort((a, b) => a[0] - b[0]).map(([k, n]) => `${k > 0 ? '+' : ''}${k}: ${n}`).join(', ');
}

// ------------------------------------------------------------------------------------------
// Main
// ------------------------------------------------------------------------------------------

async function main() {
  const y4m = path.join(res.tmp, 'frames.y4m');
  let t = Date.now();
  makeY4m(y4m);
  log(`camera feed: ${y4m} (${W}x${H}, ${FPS} fps, ${FRAMES} frames, ${(fs.statSync(y4m).size / 1e6).toFixed(0)} MB) in ${Date.now() - t} ms`);

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
  let phone;
  let desk;
  const state = { rounds: [], hides: [] };

  const ok = await check('studio goes live', async () => {
    const hashGone = await studio.evaluate(() => location.hash === '');
    assert(hashGone, 'the token fragment stays in the address bar');
    await waitFor(studio, () => !document.getElementById('golive').disabled, null, 15000, 'the Go live button (camera + token)');
    await studio.click('#golive');
    await waitFor(studio, () => document.body.dataset.state === 'live', null, 20000, 'studio status Live');
    await waitFor(studio, () => document.querySelectorAll('.show-now:not([disabled])').length === 3, null, 10000, 'catalog from the snapshot');
    await studio.evaluate(installDecoder, GEOM);
    await studio.evaluate(installStudioProbe);
    await sleep(1000);
    const s = await studio.evaluate(() => window.__probe.stats());
    assert(s.decoded >= 0.9 * s.frames && s.frames > 10, `studio preview frames not decodable: ${JSON.stringify(s)}`);
    return `preview ${s.w}x${s.h}, ${s.frames} frames in 1 s, ${s.decoded} decoded, ${s.withCaptureTime} with captureTime`;
  });
  if (!ok) return;

  const watching = await check('viewers play', async () => {
    phone = await openPage(viewerBrowser, 'viewer-phone', `${hk.http}/watch/demo${WATCH_QUERY}`, {
      viewport: { width: 390, height: 844 },
      deviceScaleFactor: 2,
      isMobile: true,
      hasTouch: true,
    });
    desk = await openPage(viewerBrowser, 'viewer-desktop', `${hk.http}/watch/demo${WATCH_QUERY}`, { viewport: { width: 1280, height: 800 } });
    for (const [p, label] of [
      [phone, 'phone'],
      [desk, 'desktop'],
    ]) {
      try {
        await waitFor(
          p,
          () => window.hawkerWatch && window.hawkerWatch.viewer.state.show && window.hawkerWatch.viewer.rtpTimestamp !== null,
          null,
          30000,
          `${label}: snapshot and presented frames`,
        );
      } catch (e) {
        const diag = await p.evaluate(async () => {
          const v = window.hawkerWatch && window.hawkerWatch.viewer;
          if (!v) return 'no window.hawkerWatch';
          const out = {
            status: v.status,
            pc: v.pc && { conn: v.pc.connectionState, ice: v.pc.iceConnectionState, sig: v.pc.signalingState },
            channel: v.channel && v.channel.readyState,
            resource: v.resource,
            snapshot: !!v.state.show,
            rtp: v.rtpTimestamp,
            video: { w: v.video.videoWidth, rs: v.video.readyState, paused: v.video.paused, t: v.video.currentTime },
          };
          if (v.pc) {
            const st = [];
            (await v.pc.getStats()).forEach((s) => {
              if (s.type === 'inbound-rtp') st.push({ kind: s.kind, pkts: s.packetsReceived, frames: s.framesDecoded, fr: s.framesReceived });
            });
            out.inbound = st;
          }
          return out;
        });
        throw new Error(`${e.message}: ${JSON.stringify(diag)}`);
      }
    }
    await phone.evaluate(installDecoder, GEOM);
    await phone.evaluate(installViewerProbe);
    // Let the bandwidth estimate ramp up so frames are sharp and the frame rate steady.
    await sleep(5000);
    const s = await phone.evaluate(() => window.__probe.stats());
    assert(s.count > 75, `phone viewer presented only ${s.count} frames in 5 s`);
    assert(s.decoded >= 0.8 * s.count, `phone viewer frames not decodable: ${JSON.stringify(s)}`);
    return `phone viewer ${s.w}x${s.h}: ${s.count} frames in 5 s, ${s.decoded} decoded, frame interval ${s.interval} ticks`;
  });
  if (!watching) return;

  const skus = ['lamp-1', 'mug-2', 'scarf-3'];
  await check(`frame-sync: ${ROUNDS} highlights`, async () => {
    for (let i = 0; i < ROUNDS; i++) {
      await sleep(500 + Math.random() * 1500);
      const sku = skus[i % skus.length];
      const r = await studio.evaluate(studioDecodeAndClick, sku);
      assert(!r.error, r.error);
      assert(r.k !== null, `round ${i + 1}: preview frame not decodable at click time`);
      const kSdk = await studio.evaluate((c) => window.__probe.frameAt(c), r.sent.capture_ms);
      // The event as it reached the phone, and the first frame it was visible on.
      const msg = await waitFor(phone, (c) => window.__probe.message(c, 'highlight'), r.sent.capture_ms, 5000, `round ${i + 1}: highlight event at the viewer`);
      const first = await waitFor(phone, (id) => window.__probe.first(id), msg.highlight_id, 5000, `round ${i + 1}: card ${msg.highlight_id} visible`);
      const reveal = await phone.evaluate((id) => window.__probe.reveal(id, 'highlight'), msg.highlight_id);
      const kFrame = kSdk !== undefined && kSdk !== null ? await phone.evaluate(([n, t]) => window.__probe.rtpOf(n, t), [kSdk, first.t + 1000]) : null;
      const sync = await phone.evaluate(() => window.__probe.sync());
      const err = first.n === null ? null : fdiff(first.n, r.k);
      const prev = await phone.evaluate(([t, k]) => window.__probe.before(t, k), [first.t, 6]);
      const row = {
        dbg: r.dbg,
        round: i + 1,
        sku,
        k: r.k,
        k_sdk: kSdk ?? null,
        shown: first.n,
        err,
        id: msg.highlight_id,
        basis: msg.basis,
        capture_ms: r.sent.capture_ms,
        rtp_ts: msg.rtp_ts,
        shown_rtp: first.rtp,
        // Where the server put the event relative to frame K_sdk at the viewer (ticks, ms).
        rtp_vs_k: kFrame ? ((msg.rtp_ts - kFrame.rtp) | 0) : null,
        hold_ms: reveal ? Math.round(reveal.at - msg.at) : null,
        // Event arrival minus the moment frame K_sdk was presented at the viewer (> 0: late).
        late_ms: kFrame ? Math.round(msg.at - kFrame.t) : null,
        sync_delay_ms: sync.delay,
        // The viewer's frames just before the first one with the card.
        prev,
        // The card came after the viewer had already shown frame K or later (a sync miss), or
        // the viewer never presented the frames between K and the first one with the card
        // (dropped upstream: the card could not be on them).
        late_miss: verdict(prev, r.k, first.n),
      };
      state.rounds.push(row);
      log(
        `  #${String(i + 1).padStart(2)} ${sku.padEnd(8)} K=${r.k} (sdk frame ${row.k_sdk}) shown=${row.shown} err=${err} | ` +
          `${row.id} basis=${row.basis} rtp_ts=${row.rtp_ts} first-visible rtp=${row.shown_rtp} ` +
          `rtp_ts−rtp(K)=${row.rtp_vs_k === null ? '?' : `${row.rtp_vs_k} ticks (${(row.rtp_vs_k / 90).toFixed(1)} ms)`} ` +
          `arrived ${row.late_ms === null ? '?' : row.late_ms > 0 ? `${row.late_ms} ms after` : `${-row.late_ms} ms before`} frame K, held ${row.hold_ms} ms, sync delay ${row.sync_delay_ms} ms` +
          (row.late_miss === 'ok' ? '' : ` [${row.late_miss}; frames before: ${prev.join(',')}]`),
      );
      // A "Hide" now and then: the card must go away on the right frame too.
      if (i % 4 === 3) {
        await sleep(400 + Math.random() * 800);
        const hR = await studio.evaluate(studioDecodeAndHide);
        const hm = await waitFor(phone, (c) => window.__probe.message(c, 'unhighlight'), hR.sent.capture_ms, 5000, 'unhighlight event');
        const gone = await waitFor(phone, (id) => window.__probe.hidden(id), hm.highlight_id, 5000, `card ${hm.highlight_id} hidden`);
        const herr = gone.n === null || hR.k === null ? null : fdiff(gone.n, hR.k);
        const hprev = await phone.evaluate(([t, k]) => window.__probe.before(t, k), [gone.t, 6]);
        const hv = verdict(hprev, hR.k, gone.n);
        state.hides.push({ k: hR.k, shown: gone.n, err: herr, basis: hm.basis, rtp_ts: hm.rtp_ts, prev: hprev, verdict: hv });
        log(`     hide: K=${hR.k} card gone on frame ${gone.n} err=${herr} basis=${hm.basis}${hv === 'ok' ? '' : ` (${hv}; frames before: ${hprev.join(',')})`}`);
      }
    }
    state.studioStats = await rtcStats(studio, 'studio');
    state.viewerStats = await rtcStats(phone, 'viewer');
    log(`  studio video out: ${JSON.stringify(state.studioStats)}`);
    log(`  phone video in:   ${JSON.stringify(state.viewerStats)}`);
    writeOut('rounds.json', state);
    const errs = state.rounds.map((r) => r.err);
    const herrs = state.hides.map((r) => r.err);
    log(`  highlight error distribution (shown − K, frames): ${histogram(errs)}`);
    log(`  hide error distribution: ${histogram(herrs)}`);
    const ticks = state.rounds.map((r) => r.rtp_vs_k).filter((v) => v !== null);
    if (ticks.length) {
      const ms = ticks.map((v) => v / 90).sort((a, b) => a - b);
      log(`  rtp_ts − rtp(frame of capture_ms): min ${ms[0].toFixed(1)} ms, median ${ms[ms.length >> 1].toFixed(1)} ms, max ${ms[ms.length - 1].toFixed(1)} ms`);
    }
    const kVsSdk = state.rounds.filter((r) => r.k_sdk !== null).map((r) => fdiff(r.k_sdk, r.k));
    log(`  studio: frame stamped by the SDK − frame decoded at click: ${histogram(kVsSdk)}`);
    const shownVsSdk = state.rounds.filter((r) => r.k_sdk !== null && r.shown !== null).map((r) => fdiff(r.shown, r.k_sdk));
    const lateVsSdk = state.rounds.filter((r) => r.k_sdk !== null && r.shown !== null && fdiff(r.shown, r.k_sdk) > 0 && r.prev.includes(r.k_sdk)).length;
    log(`  viewer: card frame − frame stamped by the SDK: ${histogram(shownVsSdk)}; late although the stamped frame was presented: ${lateVsSdk}`);
    // |shown − K| <= 1, except when the viewer never presented frames K..shown−1 at all
    // (the encoder or network dropped them; no card can be on a frame that is never shown).
    // Such rounds are reported, and may be at most a quarter of them.
    const excused = (r) => r.err !== null && r.err > 1 && r.late_miss === 'skipped';
    const skipped = state.rounds.filter(excused).length + state.hides.filter((h) => excused({ ...h, late_miss: h.verdict })).length;
    if (skipped) log(`  ${skipped} round(s) where the viewer never presented the frames between K and the card's frame (dropped upstream)`);
    const bad = state.rounds.filter((r) => !excused(r) && (r.err === null || Math.abs(r.err) > 1));
    const badHide = state.hides.filter((r) => !excused({ ...r, late_miss: r.verdict }) && (r.err === null || Math.abs(r.err) > 1));
    assert(skipped <= Math.floor((state.rounds.length + state.hides.length) / 4), `${skipped} rounds with frames dropped upstream`);
    assert(state.rounds.length >= 10, `only ${state.rounds.length} rounds`);
    assert(!bad.length, `${bad.length} highlight(s) off by more than one frame: ${JSON.stringify(bad)}`);
    assert(!badHide.length, `${badHide.length} hide(s) off by more than one frame: ${JSON.stringify(badHide)}`);
    return `highlights ${histogram(errs)}; hides ${histogram(herrs)}`;
  });

  await check('shop: buy, stock, sold, REST, studio feed, question', async () => {
    // Show the lamp on both viewers.
    const cur = await studio.evaluate(() => document.querySelector('.sp.on-air')?.dataset.sku || null);
    if (cur !== 'lamp-1') {
      const r = await studio.evaluate(studioDecodeAndClick, 'lamp-1');
      assert(!r.error, r.error);
    }
    for (const p of [phone, desk]) {
      await waitFor(p, () => document.getElementById('card').dataset.sku === 'lamp-1' && document.getElementById('card').classList.contains('visible'), null, 5000, 'lamp card');
    }
    const stock0 = await phone.evaluate(() => Number(document.getElementById('card-stock').dataset.stock));
    const stockDesk0 = await desk.evaluate(() => Number(document.getElementById('card-stock').dataset.stock));
    assert(stock0 === stockDesk0, `viewers disagree on stock: ${stock0} vs ${stockDesk0}`);
    const orderIds = [];
    for (const [p, label] of [
      [phone, 'phone'],
      [desk, 'desktop'],
    ]) {
      await p.click('#buy');
      const status = await waitFor(p, () => document.getElementById('order-result').dataset.status || null, null, 10000, `${label}: order result`);
      const text = await p.evaluate(() => document.getElementById('order-result').textContent);
      assert(status === 'confirmed', `${label}: order ${status}: ${text}`);
      const id = text.match(/#(\S+)/)?.[1];
      assert(id, `${label}: no order id in "${text}"`);
      orderIds.push(id);
      log(`  ${label}: ${text}`);
    }
    for (const [p, label] of [
      [phone, 'phone'],
      [desk, 'desktop'],
    ]) {
      await waitFor(p, (n) => Number(document.getElementById('card-stock').dataset.stock) === n, stock0 - 2, 5000, `${label}: stock ${stock0} → ${stock0 - 2}`);
      const sold = await waitFor(p, () => (!document.getElementById('card-sold').hidden && document.getElementById('card-sold').textContent) || null, null, 5000, `${label}: sold in the last minute`);
      log(`  ${label}: stock ${stock0} → ${stock0 - 2}, "${sold}"`);
    }
    // Studio feed.
    const feed = await waitFor(
      studio,
      (ids) => {
        const got = [...document.querySelectorAll('#feed .fi-order')].map((e) => e.dataset.orderId);
        return ids.every((i) => got.includes(i)) ? got : null;
      },
      orderIds,
      5000,
      'orders in the studio feed',
    );
    log(`  studio feed has orders ${feed.join(', ')}`);
    // REST API.
    const r = await fetch(`${hk.http}/api/v1/shows/demo/orders`, { headers: { Authorization: `Bearer ${adminToken}` } });
    const body = await r.text();
    if (r.status === 200) {
      for (const id of orderIds) assert(body.includes(id), `order ${id} missing from GET /api/v1/shows/demo/orders: ${body.slice(0, 400)}`);
      log(`  REST: GET /api/v1/shows/demo/orders lists ${orderIds.join(', ')}`);
    } else {
      log(`  REST: GET /api/v1/shows/demo/orders → ${r.status} (${body.trim().slice(0, 80)}); NOT checked via REST, the studio feed check above stands in`);
      state.restMissing = r.status;
    }
    // Question.
    const q = 'Does the lamp come with a bulb?';
    await phone.fill('#ask-text', q);
    await phone.click('#ask button');
    await waitFor(phone, () => /Sent/.test(document.getElementById('ask-status').textContent), null, 5000, 'question sent');
    await waitFor(studio, (text) => [...document.querySelectorAll('#feed .fi-question')].some((e) => e.textContent.includes(text)), q, 5000, 'question in the studio feed');
    const viewers = await studio.evaluate(() => document.getElementById('viewers').textContent);
    assert(Number(viewers) === 2, `studio shows ${viewers} viewers, expected 2`);
    // Both viewer pages show the studio's number (they once showed a stale count from before
    // their own session was up).
    for (const [label, p] of [['phone', phone], ['desktop', desk]]) {
      await waitFor(p, () => document.getElementById('viewers-n').textContent === '2', null, 3000, `${label} viewer page shows 2 viewers`);
    }
    return `orders ${orderIds.join(', ')}; stock ${stock0} → ${stock0 - 2} on both viewers; studio and both viewer pages show 2 viewers${state.restMissing ? `; REST orders endpoint answered ${state.restMissing}` : ''}`;
  });

  await check('reconnect: viewer session dropped, buy answered once after reconnect', async () => {
    await phone.evaluate(() => {
      window.__rc = [];
      const v = window.hawkerWatch.viewer;
      for (const t of ['reconnecting', 'reconnected']) v.addEventListener(t, (e) => window.__rc.push({ t, d: e.detail, at: performance.now() }));
    });
    const resource = await phone.evaluate(() => window.hawkerWatch.viewer.resource);
    assert(resource, 'viewer has no session resource');
    // The server drops the session (as if the viewer's network went away).
    const del = await fetch(resource, { method: 'DELETE' });
    assert(del.status === 200, `DELETE ${resource} → ${del.status}`);
    // Buy right away: sent into the dying session or queued; either way it must be answered
    // exactly once, after the SDK reconnects, with the same request id.
    const t = Date.now();
    const order = await phone.evaluate(async () => {
      const v = window.hawkerWatch.viewer;
      const p = v.buy('mug-2', 1, { requestId: `rc-${Math.random().toString(36).slice(2)}` });
      const o = await p;
      return { ...o };
    });
    const rc = await phone.evaluate(() => window.__rc.map((e) => e.t + (e.d.reason ? ` (${e.d.reason})` : '')));
    assert(rc.includes('reconnected'), `no reconnected event: ${JSON.stringify(rc)}`);
    assert(order.status === 'confirmed', `order after reconnect: ${JSON.stringify(order)}`);
    const resource2 = await phone.evaluate(() => window.hawkerWatch.viewer.resource);
    assert(resource2 && resource2 !== resource, 'no new session after reconnect');
    await waitFor(phone, () => window.hawkerWatch.viewer.rtpTimestamp !== null && document.getElementById('card').classList.contains('visible'), null, 10000, 'video and card back');
    let dup = '';
    const r = await fetch(`${hk.http}/api/v1/shows/demo/orders`, { headers: { Authorization: `Bearer ${adminToken}` } });
    if (r.status === 200) {
      const body = await r.text();
      const n = body.split(order.request_id).length - 1;
      assert(n === 1, `request id ${order.request_id} appears ${n} times in the REST order list`);
      dup = '; exactly one order for the request id (REST)';
    }
    return `events ${rc.join(' → ')}; order ${order.order_id} confirmed ${Date.now() - t} ms after the drop${dup}`;
  });

  await check('screenshots', async () => {
    const SCREENSHOTS = opts.updateScreenshots ? path.join(REPO, 'docs', 'screenshots') : opts.out;
    fs.mkdirSync(SCREENSHOTS, { recursive: true });
    // Let toasts and transitions settle.
    await sleep(4200);
    await studio.screenshot({ path: path.join(SCREENSHOTS, 'studio.png') });
    await phone.screenshot({ path: path.join(SCREENSHOTS, 'viewer-phone.png') });
    await desk.screenshot({ path: path.join(opts.out, 'viewer-desktop.png') });
    await studio.screenshot({ path: path.join(opts.out, 'studio-full.png'), fullPage: true });
    const index = await openPage(viewerBrowser, 'index', `${hk.http}/`, { viewport: { width: 1024, height: 700 } });
    await waitFor(index, () => document.querySelectorAll('.show-card').length > 0, null, 5000, 'index lists the live show');
    await index.screenshot({ path: path.join(opts.out, 'index.png') });
    const rel = (f) => path.relative(REPO, path.join(SCREENSHOTS, f));
    return `${rel('studio.png')}, ${rel('viewer-phone.png')} (+ ${path.relative(REPO, opts.out)}/viewer-desktop.png, index.png)`;
  });

  await check('end show and shut down', async () => {
    await studio.click('#end');
    await waitFor(studio, () => document.body.dataset.state === 'off', null, 5000, 'studio offline');
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
  const errs = res.console.filter((l) => /pageerror|\berror:/.test(l) && !/favicon/.test(l));
  if (errs.length) log(`page errors/console errors:\n  ${errs.slice(0, 20).join('\n  ')}`);
  for (const b of res.browsers) await b.close().catch(() => {});
  if (failures && res.hawker) log(`hawker log tail:\n${res.hawker.tail.slice(-25).join('\n')}`);
  const passed = results.filter((r) => r.ok).length;
  log(`frame_sync: ${passed} passed, ${results.length - passed} failed${failures > results.length - passed ? ' (+ setup failure)' : ''} in ${((Date.now() - T0) / 1000).toFixed(1)} s`);
  process.exit(failures ? 1 : 0);
}
