/**
 * Wrap-aware "a is at or after b" for 32-bit RTP timestamps. JS numbers are doubles; both
 * operands are normalised to [0, 2^32) first, their difference is exact, and `| 0` reduces
 * it modulo 2^32 to a signed 32-bit integer.
 * @param {number} a
 * @param {number} b
 */
export function rtpAtOrAfter(a: number, b: number): boolean;
/**
 * Signed distance a − b in RTP ticks, wrap-aware.
 * @param {number} a
 * @param {number} b
 */
export function rtpDiff(a: number, b: number): number;
/** A random RFC 4122 v4 UUID (crypto.randomUUID needs a secure context; this does not). */
export function uuid(): string;
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
export function publish(url: string, token: string, stream: MediaStream, opts?: PublishOptions): Promise<Publisher>;
/**
 * Watch a show: a WHEP session playing into `video`, with the `events` channel. Returns at
 * once; `viewer.ready` resolves when the first session is open. Reconnects by itself.
 * @param {string} url  e.g. `https://live.example.com/whep/demo`
 * @param {HTMLVideoElement} video
 * @param {WatchOptions} [opts]
 * @returns {Viewer}
 */
export function watch(url: string, video: HTMLVideoElement, opts?: WatchOptions): Viewer;
/** Protocol version this SDK speaks (`snapshot.v`). */
export const PROTOCOL_VERSION: 1;
/** Label of the commerce data channel. */
export const CHANNEL_LABEL: "events";
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
    constructor(message: string, info?: {
        code?: string;
        status?: number;
        requestId?: string;
    });
    /** Protocol error code (`bad_request`, `not_found`, `rate_limited`, …) or an SDK code
     *  (`http`, `network`, `closed`, `timeout`). */
    code: string;
    /** HTTP status, for signalling failures. */
    status: number;
    /** The `request_id` the error answers, if any. */
    requestId: string;
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
    constructor(url: string, token: string, stream: MediaStream, opts: PublishOptions);
    stream: MediaStream;
    clock: CaptureClock;
    /** The last `snapshot` received. */
    snapshot: any;
    /** Keep the frame rate (the product must be visible on the frame it was shown) and cap bitrate. */
    _tuneSender(sender: any): Promise<void>;
    _onOpen(): void;
    /**
     * Send a seller action stamped with the capture time of the frame on screen.
     * @returns {Object} the message as sent (with `capture_ms`)
     */
    _action(msg: any): any;
    /**
     * Show a product: viewers see its card from the frame the seller is looking at now.
     * @param {string} sku
     */
    highlight(sku: string): any;
    /** Hide the product card (from the frame on screen now). */
    unhighlight(): any;
    /**
     * Change a price (minor units), effective from the frame on screen now.
     * @param {string} sku
     * @param {number} price
     */
    setPrice(sku: string, price: number): any;
    /**
     * Set the absolute stock of a product.
     * @param {string} sku
     * @param {number} stock
     */
    setStock(sku: string, stock: number): {
        type: string;
        sku: string;
        stock: number;
    };
    /** Post a chat line to every viewer. @param {string} text */
    chat(text: string): {
        type: string;
        text: string;
    };
    /** The `capture_ms` an action would carry now, and where it comes from. */
    captureTime(): {
        capture_ms: number;
        source: "frame" | "clock";
    };
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
export const SIMULCAST_LAYERS: ReadonlyArray<SimulcastLayer>;
/**
 * A viewer's quality cap: 'auto' (and 'high'): the best layer the link carries; 'medium': at
 * most the middle layer; 'low': the lowest.
 * @typedef {'auto'|'low'|'medium'|'high'} Quality
 */
/**
 * The quality caps the server takes, best first.
 * @type {ReadonlyArray<Quality>}
 */
export const QUALITIES: ReadonlyArray<Quality>;
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
     * The anonymous viewer id kept in localStorage: the server-signed `X-Hawker-Viewer` of an
     * earlier session, or '' before the first one.
     */
    static storedViewerId(): any;
    /** @param {any} q @returns {Quality} */
    static _checkQuality(q: any): Quality;
    /**
     * @param {string} url
     * @param {HTMLVideoElement} video
     * @param {WatchOptions} opts
     */
    constructor(url: string, video: HTMLVideoElement, opts: WatchOptions);
    video: HTMLVideoElement;
    viewerId: any;
    /** @type {Quality} the quality cap (kept across reconnects) */
    quality: Quality;
    /** @type {LayerInfo|null} the video layer received now, as the server last said (null without simulcast) */
    layer: LayerInfo | null;
    /** Frame-consistent state: what the viewer should see on the frame on screen. */
    state: {
        /** @type {any} */ show: any;
        /** @type {Map<string, Product>} */ products: Map<string, Product>;
        /** @type {Highlight|null} */ highlight: Highlight | null;
        /** @type {Map<string, number>} sku → units sold in the last minute */ sold: Map<string, number>;
        /** @type {number|null} connected viewers (snapshot, then `viewers` when it changes) */ viewers: number | null;
        ended: boolean;
        /** @type {ReplayInfo|null} a replay's timeline (null when live) */ replay: ReplayInfo | null;
    };
    /** Where the next replay session starts, in seconds. */
    _seekT: number;
    /** @type {{ts: number, t: number}|null} a replay session's starting frame and its second */
    _replayBase: {
        ts: number;
        t: number;
    } | null;
    /** RTP timestamp of the newest presented frame, or null. */
    rtpTimestamp: number;
    /** @type {{msg: any, at: number}[]} */
    _queue: {
        msg: any;
        at: number;
    }[];
    /** @type {Map<string, {msg: any, resolve: Function, reject: Function}>} */
    _orders: Map<string, {
        msg: any;
        resolve: Function;
        reject: Function;
    }>;
    /** @type {{resolve: Function, reject: Function}[]} */
    _asks: {
        resolve: Function;
        reject: Function;
    }[];
    _lastFrameAt: number;
    _lastFrame: {
        rtpTimestamp: number;
        presentedFrames: any;
        mediaTime: any;
    };
    /** @type {RTCRtpReceiver[]} */
    _receivers: RTCRtpReceiver[];
    /**
     * Playout delay asked of the browser (RTCRtpReceiver.jitterBufferTarget, ms) so that
     * seller events arrive before their frame is shown; null when left to the browser.
     */
    syncDelayMs: number;
    /** Seller events that arrived after their frame was already on screen. */
    lateEvents: number;
    _frameDeltas: any[];
    _stopFrames: boolean;
    _timer: number;
    /** @type {Promise<void>} resolves when the first session is open */
    ready: Promise<void>;
    /** Keep the id the server issued (or forget a refused one, `''`). */
    _viewerIdIssued(id: any): void;
    /** Apply `syncDelayMs` to the current receivers (audio too, to keep lips in sync). */
    _applySyncDelay(): void;
    /**
     * A seller event arrived when its frame was already presented: with `syncDelay: 'auto'`,
     * hold the video back by that much more (plus a frame), up to `maxSyncDelayMs`.
     */
    _learnLateness(msg: any, now: any): void;
    _play(): void;
    /** Unmute (call from a user gesture). */
    unmute(): Promise<void>;
    _unmuted: boolean;
    _startFrames(): void;
    /**
     * Frame interval in RTP ticks: the 25th percentile of recent steps between presented
     * frames (robust to dropped frames and capture-clock jitter); 3000 (30 fps) when unknown.
     */
    frameInterval(): any;
    _tolerance(): number;
    /** Whether a held message may be revealed now. */
    _due(item: any, now: any): boolean;
    _pump(): void;
    _reveal(msg: any, frame: any): void;
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
    buy(sku: string, qty?: number, o?: {
        highlightId?: string;
        requestId?: string;
    }): Promise<OrderResult>;
    /**
     * Ask the seller a question. Resolves when the server passed it on.
     * @param {string} text
     */
    ask(text: string): Promise<any>;
    /**
     * Cap the video quality (when the seller sends simulcast). Takes effect at the next keyframe
     * of the new layer: a lower cap at once, a higher one as the link allows; the `layer` event
     * says when. Kept for reconnects. Returns whether the server was told now (false while
     * disconnected: the next session asks for it in its WHEP request).
     * @param {Quality} quality
     * @returns {boolean}
     */
    setQuality(quality: Quality): boolean;
    /** Product by sku, as on the frame on screen. @param {string} sku */
    product(sku: string): Product;
    /**
     * A replay's position: seconds from the start of the recording of the frame on screen
     * (before the first frame, where the session starts); null when live.
     * @returns {number|null}
     */
    position(): number | null;
    /**
     * Replay only: play from `t` seconds into the recording. The server starts at the keyframe
     * at or before `t` (the snapshot's `replay.start`) with the card on screen at that frame;
     * events then arrive on their frames as before. Resolves when the new session is open;
     * rejects with a HawkerError (`status` 400) for a `t` past the end, and the viewer then
     * has no session until the next `seek`.
     * @param {number} t
     * @returns {Promise<void>}
     */
    seek(t: number): Promise<void>;
}
export type PublishOptions = {
    /**
     * The local preview the seller watches. Its frames'
     * capture times stamp every action; without it actions carry Date.now().
     */
    preview?: HTMLVideoElement;
    /**
     * Preferred codec, e.g. 'H264' or 'VP8'.
     */
    videoCodec?: string;
    /**
     * Video bitrate cap, bit/s (with simulcast: of the
     * top layer).
     */
    maxBitrate?: number;
    /**
     * Send the video as 2 or 3 layers so that
     * each viewer gets the one its link carries: `true` for {@link SIMULCAST_LAYERS}, or your
     * own layers (lowest first). Default false: one stream.
     */
    simulcast?: boolean | SimulcastLayer[];
    /**
     * default 'maintain-framerate'.
     */
    degradationPreference?: RTCDegradationPreference;
    iceServers?: RTCIceServer[];
    /**
     * Re-publish after a dropped connection (default true).
     */
    reconnect?: boolean;
    /**
     * Tries for the first connection (default 3: a 409 from
     * a session that is still ending is retried).
     */
    initialAttempts?: number;
    /**
     * default 15000.
     */
    connectTimeoutMs?: number;
    /**
     * default 500.
     */
    backoffBaseMs?: number;
    /**
     * default 15000.
     */
    backoffMaxMs?: number;
    debug?: boolean;
};
export type Product = {
    sku: string;
    title: string;
    /**
     * Price in minor units of `currency` (cents for USD).
     */
    price: number;
    /**
     * ISO 4217 code.
     */
    currency: string;
    image_url: string | null;
    stock: number;
};
export type Highlight = {
    highlight_id: string;
    sku: string;
    product?: Product;
    rtp_ts: number | null;
};
export type OrderResult = {
    type: "order";
    request_id: string;
    status: "confirmed" | "sold_out" | "rejected";
    order_id: string | null;
    sku: string;
    qty: number;
    reason: string | null;
};
/**
 * The video frame an event was revealed on.
 */
export type FrameInfo = {
    /**
     * RTP timestamp of that frame (show video clock, 90 kHz).
     */
    rtpTimestamp: number;
    presentedFrames: number;
    mediaTime: number;
};
/**
 * One simulcast layer: an `RTCRtpEncodingParameters` with a rid.
 */
export type SimulcastLayer = {
    /**
     * e.g. 'q', 'h', 'f' (lowest to highest)
     */
    rid: string;
    /**
     * 4, 2, 1 for quarter, half and full size
     */
    scaleResolutionDownBy?: number;
    /**
     * bit/s
     */
    maxBitrate?: number;
    maxFramerate?: number;
};
/**
 * A viewer's quality cap: 'auto' (and 'high'): the best layer the link carries; 'medium': at
 * most the middle layer; 'low': the lowest.
 */
export type Quality = "auto" | "low" | "medium" | "high";
/**
 * The layer of the seller's video a viewer receives (the server's `layer` message).
 */
export type LayerInfo = {
    /**
     * 0 is the lowest
     */
    layer: number;
    /**
     * how many layers the seller sends (1 without simulcast)
     */
    layers: number;
};
export type WatchOptions = {
    /**
     * A viewer token; without one the viewer is anonymous.
     */
    token?: string;
    /**
     * The anonymous viewer id the server issued earlier
     * (`X-Hawker-Viewer`; default: the one kept in localStorage). Ids cannot be chosen.
     */
    viewerId?: string;
    /**
     * Start muted (default true: browsers allow muted autoplay).
     */
    muted?: boolean;
    /**
     * Reveal an event on the first frame whose
     * timestamp is at least `rtp_ts − tolerance`. 'half' (default): half the measured frame
     * interval, i.e. the frame nearest to `rtp_ts`. 0: strictly the first frame at or after it.
     */
    frameTolerance?: "half" | number;
    /**
     * Longest an event waits for its frame (default 5000).
     */
    maxHoldMs?: number;
    /**
     * Quality cap when the seller sends simulcast (default 'auto';
     * see {@link Viewer#setQuality}).
     */
    quality?: Quality;
    /**
     * Video playout delay (ms, via
     * RTCRtpReceiver.jitterBufferTarget) that lets seller events arrive before their frame.
     * 'auto' (default): start at `initialSyncDelayMs` and grow when an event arrives late.
     * A number: fixed. false: leave playout to the browser (lowest latency, events may show a
     * frame or two late).
     */
    syncDelay?: "auto" | number | false;
    /**
     * default 150.
     */
    initialSyncDelayMs?: number;
    /**
     * default 600.
     */
    maxSyncDelayMs?: number;
    iceServers?: RTCIceServer[];
    /**
     * default true.
     */
    reconnect?: boolean;
    /**
     * default 500.
     */
    backoffBaseMs?: number;
    /**
     * default 15000.
     */
    backoffMaxMs?: number;
    /**
     * default 10000 (0 disables keep-alive checks).
     */
    pingIntervalMs?: number;
    debug?: boolean;
    /**
     * Watch the show's recording instead of the live
     * show (an ended show): from the start, or from `t` seconds. See {@link Viewer#seek}.
     */
    replay?: boolean | {
        t?: number;
    };
};
/**
 * A replay's timeline, from its snapshot (`state.replay`).
 */
export type ReplayInfo = {
    /**
     * Seconds from the start of the recording where this session
     * started (the keyframe at or before the asked time).
     */
    start: number;
    /**
     * Length of the recording in seconds.
     */
    duration: number;
    /**
     * Every product shown
     * in the show, with the second it was shown at (seek there to see it).
     */
    chapters: {
        t: number;
        highlight_id: string;
        sku: string;
    }[];
};
/**
 * The part publisher and viewer share: one RTCPeerConnection with the `events` channel at a
 * time, replaced on failure with exponential back-off.
 */
declare class Session extends EventTarget {
    /**
     * @param {string} url
     * @param {Object} opts
     */
    constructor(url: string, opts: any);
    url: string;
    opts: any;
    /** @type {RTCPeerConnection|null} */
    pc: RTCPeerConnection | null;
    /** @type {RTCDataChannel|null} */
    channel: RTCDataChannel | null;
    /** Session resource URL (for DELETE). */
    resource: string;
    /** 'new' | 'connecting' | 'open' | 'reconnecting' | 'closed' */
    status: string;
    _closed: boolean;
    _generation: number;
    _everOpened: boolean;
    _lastRx: number;
    _pinger: number;
    _reconnecting: boolean;
    /** Generation of the session that reached `open` (only its failure triggers a reconnect). */
    _openGen: number;
    /**
     * Listen for an event; the handler gets `event.detail`. Returns a function that unsubscribes.
     * @param {string} type
     * @param {(detail: any, event: CustomEvent) => void} fn
     */
    on(type: string, fn: (detail: any, event: CustomEvent) => void): () => void;
    _emit(type: any, detail: any): void;
    _log(...args: any[]): void;
    /** Send one protocol message now; false when the channel is not open. */
    _send(msg: any): boolean;
    /** Build the peer connection for one attempt (subclasses add transceivers). */
    _newPeer(): {
        pc: RTCPeerConnection;
        ch: RTCDataChannel;
    };
    /** One connection attempt. Resolves when the events channel is open. */
    _connectOnce(): Promise<number>;
    _startPinger(gen: any): void;
    /** The current connection broke: start over with a new session (once per generation). */
    _lost(gen: any, reason: any): void;
    _reconnect(reason: any): Promise<void>;
    /**
     * First connection. Retryable failures (network, 5xx, 409 while an old session ends, 429)
     * are retried: `forever` with `reconnecting` events (viewers), else up to
     * `opts.initialAttempts` times (sellers get the error to show).
     */
    _start(forever: any): Promise<void>;
    /** End the session: DELETE the resource and close the peer connection. */
    close(): Promise<void>;
    _signalUrl(): string;
    /**
     * The server issued (or refused, `''`) an anonymous viewer id; only viewers keep one.
     * @param {string} _id
     */
    _viewerIdIssued(_id: string): void;
    _token(): any;
    _onMessage(_msg: any): void;
    _onOpen(_again: any): void;
    _onDisconnected(): void;
    _onClose(): void;
}
/**
 * Follows the frames a local preview <video> presents, to know the capture time of the frame
 * the seller is looking at.
 */
declare class CaptureClock {
    /** @param {HTMLVideoElement|null|undefined} video */
    constructor(video: HTMLVideoElement | null | undefined);
    video: HTMLVideoElement;
    /** Wall-clock capture time (ms) of the newest presented preview frame. */
    captureMs: any;
    /** performance.now() when it was presented. */
    at: number;
    /** Whether the browser reports metadata.captureTime for local frames. */
    hasCaptureTime: boolean;
    frames: number;
    _stop: boolean;
    md: any;
    /**
     * `capture_ms` for an action now: the capture time of the newest presented preview frame,
     * or the wall clock when there is none (no preview, no rVFC, preview stalled > 1 s).
     * @returns {{capture_ms: number, source: 'frame'|'clock'}}
     */
    now(): {
        capture_ms: number;
        source: "frame" | "clock";
    };
    stop(): void;
}
export {};
