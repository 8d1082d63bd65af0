// hawker.js — the browser SDK of hawker, a WebRTC relay for live shopping.
//
//   import { publish, watch } from '/sdk/hawker.js';
//
//   // seller
//   const stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: true });
//   preview.srcObject = stream;
//   const studio = await publish('/whip/demo', token, stream, { preview, simulcast: true });
//   studio.highlight('lamp-1');             // stamped with the capture time of the frame on screen
//
//   // viewer
//   const show = watch('/whep/demo', videoElement);
//   show.addEventListener('highlight', (e) => showCard(e.detail.product)); // on the exact frame
//   const order = await show.buy('lamp-1', 1);
//   show.setQuality('low');                 // cap the video; the `layer` event says what arrives
//
// An ES module without a build step or dependencies. docs/sdk.md is the reference; the wire
// protocol is in docs/protocol.md. Types are JSDoc so editors and `tsc --checkJs` see them.

/** Protocol version this SDK speaks (`snapshot.v`). */
export const PROTOCOL_VERSION = 1;

/** Label of the commerce data channel. */
export const CHANNEL_LABEL = 'events';

/** Video RTP clock rate. */
const VIDEO_HZ = 90000;

/**
 * @typedef {Object} Product
 * @property {string} sku
 * @property {string} title
 * @property {number} price      Price in minor units of `currency` (cents for USD).
 * @property {string} currency   ISO 4217 code.
 * @property {string|null} image_url
 * @property {number} stock
 */

/**
 * @typedef {Object} Highlight
 * @property {string} highlight_id
 * @property {string} sku
 * @property {Product} [product]
 * @property {number|null} rtp_ts
 */

/**
 * @typedef {Object} OrderResult
 * @property {'order'} type
 * @property {string} request_id
 * @property {'confirmed'|'sold_out'|'rejected'} status
 * @property {string|null} order_id
 * @property {string} sku
 * @property {number} qty
 * @property {string|null} reason
 */

/**
 * @typedef {Object} FrameInfo   The video frame an event was revealed on.
 * @property {number} rtpTimestamp   RTP timestamp of that frame (show video clock, 90 kHz).
 * @property {number} presentedFrames
 * @property {number} mediaTime
 */

/** An error from the server (`error` message or HTTP status) or from the SDK. */
export class HawkerError extends Error {
  /**
   * @param {string} message
   * @param {{code?: string, status?: number, requestId?: string}} [info]
   */
  constructor(message, info = {}) {
    super(message);
    this.name = 'HawkerError';
    /** Protocol error code (`bad_request`, `not_found`, `rate_limited`, …) or an SDK code
     *  (`http`, `network`, `closed`, `timeout`). */
    this.code = info.code || 'error';
    /** HTTP status, for signalling failures. */
    this.status = info.status;
    /** The `request_id` the error answers, if any. */
    this.requestId = info.requestId;
  }
}

// ---------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------

/**
 * Wrap-aware "a is at or after b" for 32-bit RTP timestamps. JS numbers are doubles; both
 * operands are normalised to [0, 2^32) first, their difference is exact, and `| 0` reduces
 * it modulo 2^32 to a signed 32-bit integer.
 * @param {number} a
 * @param {number} b
 */
export function rtpAtOrAfter(a, b) {
  return (((a >>> 0) - (b >>> 0)) | 0) >= 0;
}

/**
 * Signed distance a − b in RTP ticks, wrap-aware.
 * @param {number} a
 * @param {number} b
 */
export function rtpDiff(a, b) {
  return ((a >>> 0) - (b >>> 0)) | 0;
}

/** A random RFC 4122 v4 UUID (crypto.randomUUID needs a secure context; this does not). */
export function uuid() {
  if (globalThis.crypto && typeof crypto.randomUUID === 'function') {
    try {
      return crypto.randomUUID();
    } catch {
      /* insecure context */
    }
  }
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

const hasRvfc = () =>
  typeof HTMLVideoElement !== 'undefined' && 'requestVideoFrameCallback' in HTMLVideoElement.prototype;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Resolve when ICE gathering is complete, or after `ms` (loopback/host candidates are instant). */
function gatheringComplete(pc, ms) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState !== 'complete') return;
      pc.removeEventListener('icegatheringstatechange', done);
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      pc.removeEventListener('icegatheringstatechange', done);
      resolve();
    }, ms);
    pc.addEventListener('icegatheringstatechange', done);
  });
}

/**
 * WHIP/WHEP offer/answer: POST the complete offer, apply the answer. hawker is ICE-lite and
 * does not take trickled candidates, so gathering is awaited first.
 * @param {RTCPeerConnection} pc
 * @param {string} url
 * @param {string|undefined} token
 * @param {number} gatherMs
 * @param {(id: string) => void} [onViewerId] gets the anonymous viewer id the server issued
 *   (`X-Hawker-Viewer`), or '' when the server refused the one sent
 * @returns {Promise<string|null>} the session resource URL (Location)
 */
async function negotiate(pc, url, token, gatherMs, onViewerId) {
  const offer = await pc.createOffer();
  await pc.setLocalDescription(offer);
  await gatheringComplete(pc, gatherMs);
  /** @type {Record<string,string>} */
  const headers = { 'Content-Type': 'application/sdp' };
  if (token) headers.Authorization = `Bearer ${token}`;
  const post = async (/** @type {string} */ to) => {
    try {
      return await fetch(to, { method: 'POST', headers, body: pc.localDescription.sdp });
    } catch (e) {
      throw new HawkerError(`POST ${to}: ${e && e.message ? e.message : e}`, { code: 'network' });
    }
  };
  let resp = await post(url);
  let body = await resp.text();
  const sent = new URL(url, location.href);
  if (resp.status === 403 && onViewerId && sent.searchParams.has('viewer')) {
    // A stored id this server did not issue (another deployment, a rotated secret): forget
    // it and ask again without one, so the server issues a fresh id.
    onViewerId('');
    sent.searchParams.delete('viewer');
    url = sent.toString();
    resp = await post(url);
    body = await resp.text();
  }
  if (resp.status !== 201) {
    throw new HawkerError(`POST ${url}: ${resp.status} ${body.trim()}`, { code: 'http', status: resp.status });
  }
  await pc.setRemoteDescription({ type: 'answer', sdp: body });
  const issued = resp.headers.get('X-Hawker-Viewer');
  if (issued && onViewerId) onViewerId(issued);
  const loc = resp.headers.get('Location');
  return loc ? new URL(loc, new URL(url, location.href)).toString() : null;
}

/** DELETE a session resource, best effort. */
async function hangUp(resource, token) {
  if (!resource) return;
  /** @type {Record<string,string>} */
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  try {
    await fetch(resource, { method: 'DELETE', headers, keepalive: true });
  } catch {
    /* the server times the session out */
  }
}

/** Whether an HTTP failure is worth retrying (network, 5xx, 408, 409 slot still held, 429). */
function retryable(err) {
  if (!(err instanceof HawkerError)) return true;
  if (err.code !== 'http') return true;
  const s = err.status || 0;
  return s >= 500 || s === 408 || s === 409 || s === 429;
}

/** Exponential back-off with ±25 % jitter. */
function backoff(attempt, baseMs, maxMs) {
  const d = Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 16));
  return Math.round(d * (0.75 + Math.random() * 0.5));
}

// ---------------------------------------------------------------------------------------------
// Common session machinery
// ---------------------------------------------------------------------------------------------

/**
 * The part publisher and viewer share: one RTCPeerConnection with the `events` channel at a
 * time, replaced on failure with exponential back-off.
 */
class Session extends EventTarget {
  /**
   * @param {string} url
   * @param {Object} opts
   */
  constructor(url, opts) {
    super();
    this.url = url;
    this.opts = opts;
    /** @type {RTCPeerConnection|null} */
    this.pc = null;
    /** @type {RTCDataChannel|null} */
    this.channel = null;
    /** Session resource URL (for DELETE). */
    this.resource = null;
    /** 'new' | 'connecting' | 'open' | 'reconnecting' | 'closed' */
    this.status = 'new';
    this._closed = false;
    this._generation = 0;
    this._everOpened = false;
    this._lastRx = 0;
    this._pinger = null;
    this._reconnecting = false;
    /** Generation of the session that reached `open` (only its failure triggers a reconnect). */
    this._openGen = -1;
  }

  /**
   * Listen for an event; the handler gets `event.detail`. Returns a function that unsubscribes.
   * @param {string} type
   * @param {(detail: any, event: CustomEvent) => void} fn
   */
  on(type, fn) {
    const h = (e) => fn(/** @type {CustomEvent} */ (e).detail, /** @type {CustomEvent} */ (e));
    this.addEventListener(type, h);
    return () => this.removeEventListener(type, h);
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  _log(...args) {
    if (this.opts.debug) console.debug('[hawker]', ...args);
  }

  /** Send one protocol message now; false when the channel is not open. */
  _send(msg) {
    const ch = this.channel;
    if (!ch || ch.readyState !== 'open') return false;
    try {
      ch.send(JSON.stringify(msg));
      return true;
    } catch {
      return false;
    }
  }

  /** Build the peer connection for one attempt (subclasses add transceivers). */
  _newPeer() {
    const pc = new RTCPeerConnection({
      bundlePolicy: 'max-bundle',
      iceServers: this.opts.iceServers || [],
    });
    const ch = pc.createDataChannel(CHANNEL_LABEL, { ordered: true });
    return { pc, ch };
  }

  /** One connection attempt. Resolves when the events channel is open. */
  async _connectOnce() {
    const gen = ++this._generation;
    const { pc, ch } = this._newPeer();
    this.pc = pc;
    this.channel = ch;
    const opened = new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new HawkerError('events channel did not open in time', { code: 'timeout' })),
        this.opts.connectTimeoutMs || 15000,
      );
      ch.addEventListener('open', () => {
        clearTimeout(timer);
        resolve();
      });
      pc.addEventListener('connectionstatechange', () => {
        if (pc.connectionState === 'failed' || pc.connectionState === 'closed') {
          clearTimeout(timer);
          reject(new HawkerError(`connection ${pc.connectionState}`, { code: 'network' }));
        }
      });
    });
    ch.addEventListener('message', (e) => {
      if (gen !== this._generation) return;
      this._lastRx = performance.now();
      let msg;
      try {
        msg = JSON.parse(e.data);
      } catch {
        return;
      }
      if (msg && typeof msg === 'object') this._onMessage(msg);
    });
    ch.addEventListener('close', () => this._lost(gen, 'events channel closed'));
    let disconnectTimer = null;
    pc.addEventListener('connectionstatechange', () => {
      const s = pc.connectionState;
      this._log('connectionState', s);
      if (s === 'failed' || s === 'closed') this._lost(gen, `connection ${s}`);
      else if (s === 'disconnected') {
        clearTimeout(disconnectTimer);
        disconnectTimer = setTimeout(() => {
          if (pc.connectionState === 'disconnected') this._lost(gen, 'connection disconnected');
        }, this.opts.disconnectGraceMs ?? 4000);
      }
    });
    try {
      this.resource = await negotiate(pc, this._signalUrl(), this._token(), this.opts.gatherTimeoutMs ?? 2000,
        (id) => this._viewerIdIssued(id));
      await opened;
    } catch (e) {
      opened.catch(() => {});
      if (gen === this._generation) {
        const res = this.resource;
        this.resource = null;
        hangUp(res, this._token());
        pc.close();
      }
      throw e;
    }
    if (this._closed || gen !== this._generation) {
      const res = this.resource;
      this.resource = null;
      pc.close();
      hangUp(res, this._token());
      throw new HawkerError('closed', { code: 'closed' });
    }
    this._lastRx = performance.now();
    this.status = 'open';
    this._openGen = gen;
    this._startPinger(gen);
    return gen;
  }

  _startPinger(gen) {
    clearInterval(this._pinger);
    const every = this.opts.pingIntervalMs ?? 10000;
    if (!every) return;
    this._pinger = setInterval(() => {
      if (gen !== this._generation || this._closed) return;
      if (performance.now() - this._lastRx > every * 2.5) {
        this._lost(gen, 'no reply to ping');
        return;
      }
      this._send({ type: 'ping' });
    }, every);
  }

  /** The current connection broke: start over with a new session (once per generation). */
  _lost(gen, reason) {
    if (this._closed || gen !== this._generation || gen !== this._openGen || this._reconnecting) return;
    if (this.opts.reconnect === false) {
      this.close();
      return;
    }
    this._reconnect(reason);
  }

  async _reconnect(reason) {
    this._reconnecting = true;
    this.status = 'reconnecting';
    this._generation++; // ignore late events of the broken session
    clearInterval(this._pinger);
    this._onDisconnected();
    const old = this.pc;
    const res = this.resource;
    this.resource = null;
    // Free the server's slot for this session (a publisher's is exclusive), then let go.
    await Promise.race([hangUp(res, this._token()), sleep(2000)]);
    if (old) old.close();
    for (let attempt = 1; !this._closed; attempt++) {
      const delayMs = backoff(attempt - 1, this.opts.backoffBaseMs ?? 500, this.opts.backoffMaxMs ?? 15000);
      this._emit('reconnecting', { attempt, delayMs, reason });
      await sleep(delayMs);
      if (this._closed) break;
      try {
        await this._connectOnce();
        this._reconnecting = false;
        this._emit('reconnected', { attempt });
        this._onOpen(true);
        return;
      } catch (e) {
        reason = e && e.message ? e.message : String(e);
        this._emit('error', e instanceof HawkerError ? e : new HawkerError(reason, { code: 'network' }));
        if (!retryable(e)) {
          this.close();
          return;
        }
      }
    }
    this._reconnecting = false;
  }

  /**
   * First connection. Retryable failures (network, 5xx, 409 while an old session ends, 429)
   * are retried: `forever` with `reconnecting` events (viewers), else up to
   * `opts.initialAttempts` times (sellers get the error to show).
   */
  async _start(forever) {
    this.status = 'connecting';
    for (let attempt = 1; ; attempt++) {
      try {
        await this._connectOnce();
        break;
      } catch (e) {
        const err = e instanceof HawkerError ? e : new HawkerError(String(e && e.message ? e.message : e), { code: 'network' });
        if (this._closed) throw err;
        if (!retryable(err) || (!forever && attempt >= (this.opts.initialAttempts ?? 1))) {
          this._closed = true;
          this.status = 'closed';
          this._onClose();
          this._emit('error', err);
          this._emit('closed', { error: err });
          throw err;
        }
        const delayMs = backoff(attempt - 1, this.opts.backoffBaseMs ?? 500, this.opts.backoffMaxMs ?? 15000);
        if (forever) {
          this._emit('error', err);
          this._emit('reconnecting', { attempt, delayMs, reason: err.message });
        }
        await sleep(delayMs);
        if (this._closed) throw new HawkerError('closed', { code: 'closed' });
      }
    }
    this._everOpened = true;
    this._emit('connected', { resource: this.resource });
    this._onOpen(false);
  }

  /** End the session: DELETE the resource and close the peer connection. */
  async close() {
    if (this._closed) return;
    this._closed = true;
    this.status = 'closed';
    this._generation++;
    clearInterval(this._pinger);
    this._onClose();
    const res = this.resource;
    this.resource = null;
    // DELETE first: closing the peer connection first makes the server drop the session on
    // its own, and the DELETE would then find nothing (404).
    await Promise.race([hangUp(res, this._token()), sleep(2000)]);
    if (this.pc) this.pc.close();
    this._emit('closed', {});
  }

  // Hooks.
  _signalUrl() {
    return this.url;
  }
  /**
   * The server issued (or refused, `''`) an anonymous viewer id; only viewers keep one.
   * @param {string} _id
   */
  _viewerIdIssued(_id) {}
  _token() {
    return this.opts.token || null;
  }
  _onMessage(_msg) {}
  _onOpen(_again) {}
  _onDisconnected() {}
  _onClose() {}
}

// ---------------------------------------------------------------------------------------------
// Seller
// ---------------------------------------------------------------------------------------------

/**
 * Follows the frames a local preview <video> presents, to know the capture time of the frame
 * the seller is looking at.
 */
class CaptureClock {
  /** @param {HTMLVideoElement|null|undefined} video */
  constructor(video) {
    this.video = video || null;
    /** Wall-clock capture time (ms) of the newest presented preview frame. */
    this.captureMs = null;
    /** performance.now() when it was presented. */
    this.at = 0;
    /** Whether the browser reports metadata.captureTime for local frames. */
    this.hasCaptureTime = false;
    this.frames = 0;
    this._stop = false;
    if (this.video && hasRvfc()) {
      const cb = (_now, md) => {
        if (this._stop) return;
        this.frames++;
        if (typeof md.captureTime === 'number' && md.captureTime > 0) {
          this.hasCaptureTime = true;
          this.captureMs = performance.timeOrigin + md.captureTime;
        } else {
          this.captureMs = null;
        }
        this.at = performance.now();
        this.md = md;
        this.video.requestVideoFrameCallback(cb);
      };
      this.video.requestVideoFrameCallback(cb);
    }
  }

  /**
   * `capture_ms` for an action now: the capture time of the newest presented preview frame,
   * or the wall clock when there is none (no preview, no rVFC, preview stalled > 1 s).
   * @returns {{capture_ms: number, source: 'frame'|'clock'}}
   */
  now() {
    if (this.captureMs !== null && performance.now() - this.at < 1000) {
      return { capture_ms: Math.round(this.captureMs), source: 'frame' };
    }
    return { capture_ms: Date.now(), source: 'clock' };
  }

  stop() {
    this._stop = true;
  }
}

/**
 * A live WHIP session of a seller. Events (`addEventListener` or `.on(type, detail => …)`):
 * `connected`, `snapshot`, `question`, `order_placed`, `viewers`, `error` (a HawkerError;
 * protocol errors carry `.code`), `reconnecting`, `reconnected`, `closed`, and `message` for
 * every message received.
 */
export class Publisher extends Session {
  /**
   * @param {string} url
   * @param {string} token
   * @param {MediaStream} stream
   * @param {PublishOptions} opts
   */
  constructor(url, token, stream, opts) {
    super(url, { ...opts, token });
    simulcastLayers(opts.simulcast); // refuse a bad option before anything is sent
    this.stream = stream;
    this.clock = new CaptureClock(opts.preview);
    /** The last `snapshot` received. */
    this.snapshot = null;
  }

  _newPeer() {
    const { pc, ch } = super._newPeer();
    for (const track of this.stream.getTracks()) {
      /** @type {RTCRtpTransceiverInit} */
      const init = { direction: 'sendonly', streams: [this.stream] };
      const layers = track.kind === 'video' ? simulcastLayers(this.opts.simulcast) : null;
      if (layers) init.sendEncodings = layers.map((l) => ({ ...l }));
      const tr = pc.addTransceiver(track, init);
      if (track.kind === 'video') {
        const codec = this.opts.videoCodec;
        if (codec && RTCRtpSender.getCapabilities && tr.setCodecPreferences) {
          const caps = RTCRtpSender.getCapabilities('video')?.codecs || [];
          const want = caps.filter((c) => c.mimeType.toLowerCase() === `video/${codec.toLowerCase()}`);
          const rest = caps.filter((c) => c.mimeType.toLowerCase() !== `video/${codec.toLowerCase()}`);
          if (want.length) tr.setCodecPreferences([...want, ...rest]);
        }
        this._tuneSender(tr.sender);
      }
    }
    return { pc, ch };
  }

  /** Keep the frame rate (the product must be visible on the frame it was shown) and cap bitrate. */
  async _tuneSender(sender) {
    try {
      const p = sender.getParameters();
      if (!p.encodings || !p.encodings.length) return; // set once negotiated
      p.degradationPreference = this.opts.degradationPreference || 'maintain-framerate';
      // With simulcast the cap applies to the top layer (the last encoding).
      if (this.opts.maxBitrate) p.encodings[p.encodings.length - 1].maxBitrate = this.opts.maxBitrate;
      await sender.setParameters(p);
    } catch (e) {
      this._log('setParameters', e);
    }
  }

  _onOpen() {
    if (this.pc) for (const s of this.pc.getSenders()) if (s.track && s.track.kind === 'video') this._tuneSender(s);
  }

  _onMessage(msg) {
    this._emit('message', msg);
    switch (msg.type) {
      case 'snapshot':
        this.snapshot = msg;
        this._emit('snapshot', msg);
        break;
      case 'error':
        this._emit('error', new HawkerError(msg.message || msg.code, { code: msg.code, requestId: msg.request_id }));
        break;
      case 'pong':
        break;
      default:
        this._emit(msg.type, msg);
    }
  }

  _onClose() {
    this.clock.stop();
  }

  /**
   * Send a seller action stamped with the capture time of the frame on screen.
   * @returns {Object} the message as sent (with `capture_ms`)
   */
  _action(msg) {
    const { capture_ms, source } = this.clock.now();
    const m = { ...msg, capture_ms };
    if (!this._send(m)) throw new HawkerError('not connected', { code: 'closed' });
    this._log(msg.type, 'capture_ms from', source);
    return m;
  }

  /**
   * Show a product: viewers see its card from the frame the seller is looking at now.
   * @param {string} sku
   */
  highlight(sku) {
    return this._action({ type: 'highlight', sku });
  }

  /** Hide the product card (from the frame on screen now). */
  unhighlight() {
    return this._action({ type: 'unhighlight' });
  }

  /**
   * Change a price (minor units), effective from the frame on screen now.
   * @param {string} sku
   * @param {number} price
   */
  setPrice(sku, price) {
    return this._action({ type: 'price', sku, price: Math.round(price) });
  }

  /**
   * Set the absolute stock of a product.
   * @param {string} sku
   * @param {number} stock
   */
  setStock(sku, stock) {
    const m = { type: 'stock', sku, stock: Math.round(stock) };
    if (!this._send(m)) throw new HawkerError('not connected', { code: 'closed' });
    return m;
  }

  /** Post a chat line to every viewer. @param {string} text */
  chat(text) {
    const m = { type: 'chat', text };
    if (!this._send(m)) throw new HawkerError('not connected', { code: 'closed' });
    return m;
  }

  /** The `capture_ms` an action would carry now, and where it comes from. */
  captureTime() {
    return this.clock.now();
  }
}

/**
 * One simulcast layer: an `RTCRtpEncodingParameters` with a rid.
 * @typedef {Object} SimulcastLayer
 * @property {string} rid                     e.g. 'q', 'h', 'f' (lowest to highest)
 * @property {number} [scaleResolutionDownBy] 4, 2, 1 for quarter, half and full size
 * @property {number} [maxBitrate]            bit/s
 * @property {number} [maxFramerate]
 */

/**
 * The default simulcast layers: quarter, half and full resolution (320×180, 640×360 and
 * 1280×720 from a 720p camera) at 150 kbit/s, 500 kbit/s and 1.7 Mbit/s. Rids `q`/`h`/`f`:
 * the server orders layers by these names. Chromium sends fewer layers from a smaller
 * camera (2 below 960×540, 1 below 480×270).
 * @type {ReadonlyArray<SimulcastLayer>}
 */
export const SIMULCAST_LAYERS = Object.freeze([
  Object.freeze({ rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150_000 }),
  Object.freeze({ rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500_000 }),
  Object.freeze({ rid: 'f', scaleResolutionDownBy: 1, maxBitrate: 1_700_000 }),
]);

/**
 * The encodings for a `simulcast` option, or null for a single stream.
 * @param {boolean|SimulcastLayer[]|undefined} opt
 * @returns {SimulcastLayer[]|null}
 */
function simulcastLayers(opt) {
  if (!opt) return null;
  const layers = opt === true ? SIMULCAST_LAYERS : opt;
  if (!Array.isArray(layers) || layers.length < 2 || layers.length > 3) {
    throw new HawkerError('simulcast takes true or 2 to 3 layers', { code: 'invalid' });
  }
  return layers.map((l) => ({ ...l }));
}

/**
 * @typedef {Object} PublishOptions
 * @property {HTMLVideoElement} [preview]  The local preview the seller watches. Its frames'
 *   capture times stamp every action; without it actions carry Date.now().
 * @property {string} [videoCodec]        Preferred codec, e.g. 'H264' or 'VP8'.
 * @property {number} [maxBitrate]        Video bitrate cap, bit/s (with simulcast: of the
 *   top layer).
 * @property {boolean|SimulcastLayer[]} [simulcast]  Send the video as 2 or 3 layers so that
 *   each viewer gets the one its link carries: `true` for {@link SIMULCAST_LAYERS}, or your
 *   own layers (lowest first). Default false: one stream.
 * @property {RTCDegradationPreference} [degradationPreference]  default 'maintain-framerate'.
 * @property {RTCIceServer[]} [iceServers]
 * @property {boolean} [reconnect]        Re-publish after a dropped connection (default true).
 * @property {number} [initialAttempts]   Tries for the first connection (default 3: a 409 from
 *   a session that is still ending is retried).
 * @property {number} [connectTimeoutMs]  default 15000.
 * @property {number} [backoffBaseMs]     default 500.
 * @property {number} [backoffMaxMs]      default 15000.
 * @property {boolean} [debug]
 */

/**
 * Go live: publish `stream` to a WHIP endpoint with the `events` channel.
 * Resolves once the channel is open; rejects with a HawkerError (e.g. status 401, 409).
 * @param {string} url     e.g. `https://live.example.com/whip/demo`
 * @param {string} token   a publisher token for the show
 * @param {MediaStream} stream
 * @param {PublishOptions} [opts]
 * @returns {Promise<Publisher>}
 */
export async function publish(url, token, stream, opts = {}) {
  const p = new Publisher(url, token, stream, { initialAttempts: 3, ...opts });
  await p._start(false);
  return p;
}

// ---------------------------------------------------------------------------------------------
// Viewer
// ---------------------------------------------------------------------------------------------

/** localStorage key of the server-issued anonymous viewer id. */
const VIEWER_ID_KEY = 'hawker.viewer_id';

/**
 * A viewer's quality cap: 'auto' (and 'high'): the best layer the link carries; 'medium': at
 * most the middle layer; 'low': the lowest.
 * @typedef {'auto'|'low'|'medium'|'high'} Quality
 */

/**
 * The quality caps the server takes, best first.
 * @type {ReadonlyArray<Quality>}
 */
export const QUALITIES = Object.freeze(['auto', 'high', 'medium', 'low']);

/**
 * The layer of the seller's video a viewer receives (the server's `layer` message).
 * @typedef {Object} LayerInfo
 * @property {number} layer   0 is the lowest
 * @property {number} layers  how many layers the seller sends (1 without simulcast)
 */

/** Messages revealed on the video frame they belong to (`rtp_ts`), in order. */
const FRAME_EVENTS = new Set(['snapshot', 'highlight', 'unhighlight', 'price', 'stock', 'sold', 'chat', 'show_ended']);

/**
 * @typedef {Object} WatchOptions
 * @property {string} [token]      A viewer token; without one the viewer is anonymous.
 * @property {string} [viewerId]   The anonymous viewer id the server issued earlier
 *   (`X-Hawker-Viewer`; default: the one kept in localStorage). Ids cannot be chosen.
 * @property {boolean} [muted]     Start muted (default true: browsers allow muted autoplay).
 * @property {'half'|number} [frameTolerance]  Reveal an event on the first frame whose
 *   timestamp is at least `rtp_ts − tolerance`. 'half' (default): half the measured frame
 *   interval, i.e. the frame nearest to `rtp_ts`. 0: strictly the first frame at or after it.
 * @property {number} [maxHoldMs]  Longest an event waits for its frame (default 5000).
 * @property {Quality} [quality]  Quality cap when the seller sends simulcast (default 'auto';
 *   see {@link Viewer#setQuality}).
 * @property {'auto'|number|false} [syncDelay]  Video playout delay (ms, via
 *   RTCRtpReceiver.jitterBufferTarget) that lets seller events arrive before their frame.
 *   'auto' (default): start at `initialSyncDelayMs` and grow when an event arrives late.
 *   A number: fixed. false: leave playout to the browser (lowest latency, events may show a
 *   frame or two late).
 * @property {number} [initialSyncDelayMs]  default 150.
 * @property {number} [maxSyncDelayMs]      default 600.
 * @property {RTCIceServer[]} [iceServers]
 * @property {boolean} [reconnect] default true.
 * @property {number} [backoffBaseMs]  default 500.
 * @property {number} [backoffMaxMs]   default 15000.
 * @property {number} [pingIntervalMs] default 10000 (0 disables keep-alive checks).
 * @property {boolean} [debug]
 * @property {boolean|{t?: number}} [replay]  Watch the show's recording instead of the live
 *   show (an ended show): from the start, or from `t` seconds. See {@link Viewer#seek}.
 */

/**
 * A replay's timeline, from its snapshot (`state.replay`).
 * @typedef {Object} ReplayInfo
 * @property {number} start     Seconds from the start of the recording where this session
 *   started (the keyframe at or before the asked time).
 * @property {number} duration  Length of the recording in seconds.
 * @property {{t: number, highlight_id: string, sku: string}[]} chapters  Every product shown
 *   in the show, with the second it was shown at (seek there to see it).
 */

/**
 * A WHEP session of a viewer. Frame-synchronised events (detail = the message plus `frame`,
 * the {@link FrameInfo} it was revealed on, or null): `snapshot`, `highlight`, `unhighlight`,
 * `price`, `stock`, `sold`, `chat`, `show_ended`. Others: `connected`, `viewers` (the
 * connected-viewer count: from the snapshot, then whenever it changes), `layer` (a
 * {@link LayerInfo}: the video layer received now, at the start and at every switch; only
 * when the seller sends simulcast),
 * `order` (every order answer), `question_received`, `error`, `reconnecting`, `reconnected`, `closed`, `frame`
 * (never; use rVFC yourself) and `message` (every message as it arrives, before any hold).
 * A replay adds `seeked` ({t}: a seek's new session is open; its `snapshot` follows with
 * `replay.start`) and `replay_ended` (the recording played to its end).
 */
export class Viewer extends Session {
  /**
   * @param {string} url
   * @param {HTMLVideoElement} video
   * @param {WatchOptions} opts
   */
  constructor(url, video, opts) {
    super(url, opts);
    this.video = video;
    this.viewerId = opts.viewerId || Viewer.storedViewerId();
    /** @type {Quality} the quality cap (kept across reconnects) */
    this.quality = Viewer._checkQuality(opts.quality ?? 'auto');
    /** @type {LayerInfo|null} the video layer received now, as the server last said (null without simulcast) */
    this.layer = null;
    /** Frame-consistent state: what the viewer should see on the frame on screen. */
    this.state = {
      /** @type {any} */ show: null,
      /** @type {Map<string, Product>} */ products: new Map(),
      /** @type {Highlight|null} */ highlight: null,
      /** @type {Map<string, number>} sku → units sold in the last minute */ sold: new Map(),
      /** @type {number|null} connected viewers (snapshot, then `viewers` when it changes) */ viewers: null,
      ended: false,
      /** @type {ReplayInfo|null} a replay's timeline (null when live) */ replay: null,
    };
    /** Where the next replay session starts, in seconds. */
    this._seekT = opts.replay && typeof opts.replay === 'object' ? Number(opts.replay.t) || 0 : 0;
    /** @type {{ts: number, t: number}|null} a replay session's starting frame and its second */
    this._replayBase = null;
    /** RTP timestamp of the newest presented frame, or null. */
    this.rtpTimestamp = null;
    /** @type {{msg: any, at: number}[]} */
    this._queue = [];
    /** @type {Map<string, {msg: any, resolve: Function, reject: Function}>} */
    this._orders = new Map();
    /** @type {{resolve: Function, reject: Function}[]} */
    this._asks = [];
    this._lastFrameAt = 0;
    this._lastFrame = null;
    /** @type {RTCRtpReceiver[]} */
    this._receivers = [];
    const sd = opts.syncDelay ?? 'auto';
    /**
     * Playout delay asked of the browser (RTCRtpReceiver.jitterBufferTarget, ms) so that
     * seller events arrive before their frame is shown; null when left to the browser.
     */
    this.syncDelayMs = sd === false ? null : sd === 'auto' ? (opts.initialSyncDelayMs ?? 150) : Number(sd);
    /** Seller events that arrived after their frame was already on screen. */
    this.lateEvents = 0;
    this._frameDeltas = [];
    this._stopFrames = false;
    this._timer = null;
    /** @type {Promise<void>} resolves when the first session is open */
    this.ready = Promise.resolve();
  }

  /**
   * The anonymous viewer id kept in localStorage: the server-signed `X-Hawker-Viewer` of an
   * earlier session, or '' before the first one.
   */
  static storedViewerId() {
    try {
      const id = localStorage.getItem(VIEWER_ID_KEY) || '';
      return /^[A-Za-z0-9_-]{1,64}\.[0-9a-f]{32}$/.test(id) ? id : '';
    } catch {
      // Storage disabled: stable for this page only.
      return Viewer._memId || '';
    }
  }

  /** Keep the id the server issued (or forget a refused one, `''`). */
  _viewerIdIssued(id) {
    if (this.opts.token) return;
    this.viewerId = id;
    Viewer._memId = id;
    try {
      if (id) localStorage.setItem(VIEWER_ID_KEY, id);
      else localStorage.removeItem(VIEWER_ID_KEY);
    } catch {
      /* storage disabled */
    }
  }

  _signalUrl() {
    const u = new URL(this.url, location.href);
    if (!this.opts.token && this.viewerId) u.searchParams.set('viewer', this.viewerId);
    if (this.opts.replay) {
      u.searchParams.set('replay', 'true');
      if (this._seekT > 0) u.searchParams.set('t', this._seekT.toFixed(3));
    }
    if (this.quality !== 'auto') u.searchParams.set('quality', this.quality);
    else u.searchParams.delete('quality');
    return u.toString();
  }

  _newPeer() {
    const { pc, ch } = super._newPeer();
    const v = pc.addTransceiver('video', { direction: 'recvonly' });
    const a = pc.addTransceiver('audio', { direction: 'recvonly' });
    this._receivers = [v.receiver, a.receiver];
    this._applySyncDelay();
    const stream = new MediaStream();
    pc.addEventListener('track', (e) => {
      stream.addTrack(e.track);
      if (this.video.srcObject !== stream) this.video.srcObject = stream;
      this._play();
    });
    return { pc, ch };
  }

  /** Apply `syncDelayMs` to the current receivers (audio too, to keep lips in sync). */
  _applySyncDelay() {
    if (this.syncDelayMs === null) return;
    for (const r of this._receivers) {
      try {
        if ('jitterBufferTarget' in r) r.jitterBufferTarget = this.syncDelayMs;
        else if ('playoutDelayHint' in r) r.playoutDelayHint = this.syncDelayMs / 1000;
      } catch (e) {
        this._log('jitterBufferTarget', e);
      }
    }
  }

  /**
   * A seller event arrived when its frame was already presented: with `syncDelay: 'auto'`,
   * hold the video back by that much more (plus a frame), up to `maxSyncDelayMs`.
   */
  _learnLateness(msg, now) {
    if (typeof msg.rtp_ts !== 'number' || msg.basis !== 'sender_report') return;
    if (this._lastFrame === null || now - this._lastFrameAt > 1000) return;
    const behind = rtpDiff(this.rtpTimestamp, msg.rtp_ts) + this._tolerance();
    if (behind < 0) return; // in time: its frame is still to come
    this.lateEvents++;
    const lateMs = behind / 90 + (now - this._lastFrameAt);
    if ((this.opts.syncDelay ?? 'auto') !== 'auto') return;
    const max = this.opts.maxSyncDelayMs ?? 600;
    const next = Math.min(max, Math.round((this.syncDelayMs || 0) + lateMs + this.frameInterval() / 90 + 10));
    if (next > (this.syncDelayMs || 0)) {
      this.syncDelayMs = next;
      this._applySyncDelay();
      this._emit('syncdelay', { ms: next, lateMs: Math.round(lateMs) });
    }
  }

  _play() {
    const v = this.video;
    v.playsInline = true;
    v.autoplay = true;
    if (this.opts.muted !== false && !this._unmuted) v.muted = true;
    const p = v.play();
    if (p && p.catch) p.catch((e) => this._log('play()', e));
  }

  /** Unmute (call from a user gesture). */
  unmute() {
    this._unmuted = true;
    this.video.muted = false;
    return this.video.play();
  }

  _startFrames() {
    if (!hasRvfc()) return;
    const cb = (_now, md) => {
      if (this._stopFrames) return;
      const ts = md.rtpTimestamp;
      if (typeof ts === 'number') {
        if (this.rtpTimestamp !== null) {
          const d = rtpDiff(ts, this.rtpTimestamp);
          if (d > 0 && d < VIDEO_HZ) {
            this._frameDeltas.push(d);
            if (this._frameDeltas.length > 30) this._frameDeltas.shift();
          }
        }
        this.rtpTimestamp = ts >>> 0;
        this._lastFrameAt = performance.now();
        this._lastFrame = { rtpTimestamp: ts >>> 0, presentedFrames: md.presentedFrames, mediaTime: md.mediaTime };
        this._pump();
      }
      this.video.requestVideoFrameCallback(cb);
    };
    this.video.requestVideoFrameCallback(cb);
    // Releases held events when no frame comes (video stalled, paused, hidden tab).
    this._timer = setInterval(() => this._pump(), 100);
  }

  /**
   * Frame interval in RTP ticks: the 25th percentile of recent steps between presented
   * frames (robust to dropped frames and capture-clock jitter); 3000 (30 fps) when unknown.
   */
  frameInterval() {
    if (this._frameDeltas.length < 4) return 3000;
    const d = [...this._frameDeltas].sort((a, b) => a - b);
    return d[Math.floor(d.length / 4)];
  }

  _tolerance() {
    const t = this.opts.frameTolerance ?? 'half';
    if (t === 'half') return Math.floor(this.frameInterval() / 2);
    return Math.max(0, Number(t) || 0);
  }

  /** Whether a held message may be revealed now. */
  _due(item, now) {
    const ts = item.msg.rtp_ts;
    if (typeof ts !== 'number') return true; // no timestamp: in order, as soon as it is its turn
    if (!hasRvfc()) return true;
    const frames = this._lastFrame !== null && now - this._lastFrameAt < 1000;
    if (!frames) return true; // no video being presented: nothing to wait for
    if (now - item.at > (this.opts.maxHoldMs ?? 5000)) return true;
    return rtpAtOrAfter(this.rtpTimestamp, (ts - this._tolerance()) >>> 0);
  }

  _pump() {
    const now = performance.now();
    while (this._queue.length && this._due(this._queue[0], now)) {
      const item = this._queue.shift();
      const frames = this._lastFrame !== null && now - this._lastFrameAt < 1000;
      this._reveal(item.msg, frames ? { ...this._lastFrame } : null);
    }
  }

  _reveal(msg, frame) {
    const st = this.state;
    switch (msg.type) {
      case 'snapshot': {
        st.show = msg.show;
        st.products = new Map((msg.products || []).map((p) => [p.sku, { ...p }]));
        st.highlight = msg.highlight ? { ...msg.highlight, product: st.products.get(msg.highlight.sku) } : null;
        if (msg.show && msg.show.state === 'ended') st.ended = true;
        st.replay = msg.replay || null;
        this._replayBase = msg.replay && typeof msg.rtp_ts === 'number' ? { ts: msg.rtp_ts >>> 0, t: msg.replay.start } : null;
        break;
      }
      case 'highlight': {
        if (msg.product) st.products.set(msg.sku, { ...msg.product });
        st.highlight = {
          highlight_id: msg.highlight_id,
          sku: msg.sku,
          product: st.products.get(msg.sku),
          rtp_ts: msg.rtp_ts,
        };
        break;
      }
      case 'unhighlight':
        if (!st.highlight || !msg.highlight_id || st.highlight.highlight_id === msg.highlight_id) st.highlight = null;
        break;
      case 'price': {
        const p = st.products.get(msg.sku);
        if (p) {
          p.price = msg.price;
          if (msg.currency) p.currency = msg.currency;
        }
        break;
      }
      case 'stock': {
        const p = st.products.get(msg.sku);
        if (p) p.stock = msg.stock;
        break;
      }
      case 'sold':
        st.sold.set(msg.sku, msg.last_minute);
        break;
      case 'show_ended':
        st.ended = true;
        if (st.show) st.show = { ...st.show, state: 'ended' };
        break;
    }
    this._emit(msg.type, { ...msg, frame });
  }

  _onMessage(msg) {
    this._emit('message', msg);
    const t = msg.type;
    if (t === 'snapshot' && msg.show && typeof msg.show.viewers === 'number') {
      // The count is not tied to a frame: take it on arrival, so a `viewers` message that
      // arrives while the snapshot waits for its frame is not overwritten by an older count.
      this.state.viewers = msg.show.viewers;
      this._emit('viewers', { type: 'viewers', count: msg.show.viewers });
    }
    if (FRAME_EVENTS.has(t)) {
      this._learnLateness(msg, performance.now());
      this._queue.push({ msg, at: performance.now() });
      this._pump();
      return;
    }
    switch (t) {
      case 'order': {
        const p = this._orders.get(msg.request_id);
        if (p) {
          this._orders.delete(msg.request_id);
          p.resolve(msg);
        }
        this._emit('order', msg);
        break;
      }
      case 'question_received': {
        const a = this._asks.shift();
        if (a) a.resolve(msg);
        this._emit('question_received', msg);
        break;
      }
      case 'error': {
        const err = new HawkerError(msg.message || msg.code, { code: msg.code, requestId: msg.request_id });
        if (msg.request_id && this._orders.has(msg.request_id)) {
          const p = this._orders.get(msg.request_id);
          this._orders.delete(msg.request_id);
          p.reject(err);
        } else if (!msg.request_id && this._asks.length && (msg.code === 'invalid' || msg.code === 'rate_limited')) {
          this._asks.shift().reject(err);
        }
        this._emit('error', err);
        break;
      }
      case 'pong':
        break;
      case 'layer':
        if (typeof msg.layer === 'number') {
          this.layer = { layer: msg.layer, layers: typeof msg.layers === 'number' ? msg.layers : msg.layer + 1 };
          this._emit('layer', this.layer);
        }
        break;
      case 'viewers':
        // Not tied to a frame: the count is news as soon as it arrives.
        this.state.viewers = msg.count;
        this._emit('viewers', msg);
        break;
      default:
        this._emit(t, msg);
    }
  }

  _onOpen(again) {
    // Orders not yet answered go out again, unchanged: the server answers a repeated
    // request_id with the original result, so a buy is placed at most once.
    for (const p of this._orders.values()) this._send(p.msg);
    if (!again) this._startFrames();
  }

  _onDisconnected() {
    // A replay picks up where it was.
    const at = this.position();
    if (this.opts.replay && at !== null) this._seekT = at;
    // A new session starts with a fresh snapshot; events of the old one are moot.
    this._queue = [];
    this.layer = null;
    for (const a of this._asks.splice(0)) a.reject(new HawkerError('connection lost; ask again', { code: 'closed' }));
  }

  _onClose() {
    this._stopFrames = true;
    clearInterval(this._timer);
    this._queue = [];
    const err = new HawkerError('session closed', { code: 'closed' });
    for (const p of this._orders.values()) p.reject(err);
    this._orders.clear();
    for (const a of this._asks.splice(0)) a.reject(err);
  }

  /**
   * Buy a product. Resolves with the server's answer (`status` confirmed, sold_out or
   * rejected); rejects with a HawkerError for protocol errors (`invalid`, `not_found`,
   * `rate_limited`, `unavailable`) or when the session is closed. The request id is an
   * idempotency key: after a dropped connection the same request is sent again on the next
   * session until it is answered.
   * @param {string} sku
   * @param {number} [qty]
   * @param {{highlightId?: string, requestId?: string}} [o]
   * @returns {Promise<OrderResult>}
   */
  buy(sku, qty = 1, o = {}) {
    if (this._closed) return Promise.reject(new HawkerError('session closed', { code: 'closed' }));
    const request_id = o.requestId || uuid();
    /** @type {any} */
    const msg = { type: 'buy', request_id, sku, qty };
    if (this.rtpTimestamp !== null) msg.rtp_ts = this.rtpTimestamp;
    const hid = o.highlightId || (this.state.highlight && this.state.highlight.sku === sku ? this.state.highlight.highlight_id : null);
    if (hid) msg.highlight_id = hid;
    return new Promise((resolve, reject) => {
      this._orders.set(request_id, { msg, resolve, reject });
      this._send(msg); // if not open now, _onOpen sends it
    });
  }

  /**
   * Ask the seller a question. Resolves when the server passed it on.
   * @param {string} text
   */
  ask(text) {
    if (this._closed) return Promise.reject(new HawkerError('session closed', { code: 'closed' }));
    return new Promise((resolve, reject) => {
      if (!this._send({ type: 'question', text })) {
        reject(new HawkerError('not connected', { code: 'closed' }));
        return;
      }
      this._asks.push({ resolve, reject });
    });
  }

  /**
   * Cap the video quality (when the seller sends simulcast). Takes effect at the next keyframe
   * of the new layer: a lower cap at once, a higher one as the link allows; the `layer` event
   * says when. Kept for reconnects. Returns whether the server was told now (false while
   * disconnected: the next session asks for it in its WHEP request).
   * @param {Quality} quality
   * @returns {boolean}
   */
  setQuality(quality) {
    this.quality = Viewer._checkQuality(quality);
    return this._send({ type: 'quality', quality: this.quality });
  }

  /** @param {any} q @returns {Quality} */
  static _checkQuality(q) {
    if (!QUALITIES.includes(q)) throw new HawkerError(`quality must be one of ${QUALITIES.join(', ')}`, { code: 'invalid' });
    return q;
  }

  /** Product by sku, as on the frame on screen. @param {string} sku */
  product(sku) {
    return this.state.products.get(sku) || null;
  }

  /**
   * A replay's position: seconds from the start of the recording of the frame on screen
   * (before the first frame, where the session starts); null when live.
   * @returns {number|null}
   */
  position() {
    const b = this._replayBase;
    if (!b) return null;
    if (this.rtpTimestamp === null) return b.t;
    return Math.max(0, b.t + rtpDiff(this.rtpTimestamp, b.ts) / VIDEO_HZ);
  }

  /**
   * Replay only: play from `t` seconds into the recording. The server starts at the keyframe
   * at or before `t` (the snapshot's `replay.start`) with the card on screen at that frame;
   * events then arrive on their frames as before. Resolves when the new session is open;
   * rejects with a HawkerError (`status` 400) for a `t` past the end, and the viewer then
   * has no session until the next `seek`.
   * @param {number} t
   * @returns {Promise<void>}
   */
  async seek(t) {
    if (!this.opts.replay) throw new HawkerError('seek applies to a replay (watch with replay: true)', { code: 'invalid' });
    if (this._closed) throw new HawkerError('session closed', { code: 'closed' });
    this._seekT = Math.max(0, Number(t) || 0);
    this._reconnecting = true;
    try {
      this._generation++; // late events of the old session are ignored
      clearInterval(this._pinger);
      this._onDisconnected();
      this._seekT = Math.max(0, Number(t) || 0);
      const old = this.pc;
      const res = this.resource;
      this.resource = null;
      await Promise.race([hangUp(res, this._token()), sleep(2000)]);
      if (old) old.close();
      // Frames of the old position say nothing about the new one.
      this.rtpTimestamp = null;
      this._lastFrame = null;
      this._replayBase = null;
      this.state.highlight = null;
      await this._connectOnce();
      this._onOpen(true);
      this._emit('seeked', { t: this._seekT });
    } finally {
      this._reconnecting = false;
    }
  }
}

/**
 * Watch a show: a WHEP session playing into `video`, with the `events` channel. Returns at
 * once; `viewer.ready` resolves when the first session is open. Reconnects by itself.
 * @param {string} url  e.g. `https://live.example.com/whep/demo`
 * @param {HTMLVideoElement} video
 * @param {WatchOptions} [opts]
 * @returns {Viewer}
 */
export function watch(url, video, opts = {}) {
  const v = new Viewer(url, video, opts);
  v.ready = v._start(opts.reconnect !== false);
  v.ready.catch(() => {});
  return v;
}
