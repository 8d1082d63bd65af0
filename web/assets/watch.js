// The viewer page: video first, the product card revealed on the frame the seller showed it.
import { watch } from '/sdk/hawker.js';
import { el, $, money, thumb, showFromPath, toast, compact } from './ui.js';

const show = showFromPath();
const video = /** @type {HTMLVideoElement} */ ($('#video'));
const card = $('#card');
const ui = {
  title: $('#show-title'),
  sub: $('#show-sub'),
  badge: $('#live-badge'),
  viewers: $('#viewers'),
  viewersN: $('#viewers-n'),
  status: $('#player-status'),
  unmute: $('#unmute'),
  chat: $('#chat-overlay'),
  cardThumb: $('#card-thumb'),
  cardTitle: $('#card-title'),
  cardPrice: $('#card-price'),
  cardSold: $('#card-sold'),
  cardStock: $('#card-stock'),
  stockFill: $('#stock-fill'),
  buy: $('#buy'),
  qty: $('#qty'),
  result: $('#order-result'),
  catalog: $('#catalog'),
  askForm: $('#ask'),
  askText: $('#ask-text'),
  askStatus: $('#ask-status'),
};

document.title = `${show} · hawker`;
ui.title.textContent = show;

let qty = 1;
/** Highest stock seen per sku (the bar's 100 %). */
const maxStock = new Map();
let live = false;
let frames = 0;

// ?sync_delay=auto|off|<ms>: the SDK's playout delay for frame-exact events (docs/sdk.md).
const syncParam = new URLSearchParams(location.search).get('sync_delay');
const syncDelay = syncParam === null || syncParam === 'auto' ? 'auto' : syncParam === 'off' ? false : Number(syncParam);
// An ended show with a recording plays its replay (see "replay" below).
const replayMode = await offersReplay(show);
const viewer = watch(`/whep/${encodeURIComponent(show)}`, video, {
  syncDelay,
  replay: replayMode,
  quality: initialQuality(),
});
// For embedding pages and tests.
window.hawkerWatch = { viewer, show };

// ------------------------------------------------------------------------ rendering

function setLive(on, text) {
  live = on;
  ui.badge.className = `badge ${on ? 'badge-live' : 'badge-off'}`;
  ui.badge.textContent = on ? (replayMode ? 'Replay' : 'Live') : text || 'Offline';
}

function stockText(p) {
  if (p.stock <= 0) return 'Sold out';
  if (p.stock <= 5) return `Only ${p.stock} left`;
  return `${p.stock} left`;
}

function renderCard() {
  const st = viewer.state;
  const h = st.highlight;
  const p = h && (st.products.get(h.sku) || h.product);
  if (!p) {
    card.classList.remove('visible');
    card.setAttribute('aria-hidden', 'true');
    delete card.dataset.highlightId;
    delete card.dataset.sku;
    renderCatalog();
    return;
  }
  const fresh = card.dataset.highlightId !== h.highlight_id;
  card.dataset.highlightId = h.highlight_id;
  card.dataset.sku = p.sku;
  if (fresh) {
    ui.cardThumb.replaceChildren(thumb(p));
    ui.result.textContent = '';
    ui.result.className = 'order-result';
    qty = 1;
    ui.qty.textContent = '1';
  }
  ui.cardTitle.textContent = p.title;
  ui.cardPrice.textContent = money(p.price, p.currency);
  const max = Math.max(maxStock.get(p.sku) || 0, p.stock);
  maxStock.set(p.sku, max);
  ui.cardStock.textContent = stockText(p);
  ui.cardStock.dataset.stock = String(p.stock);
  ui.cardStock.classList.toggle('low', p.stock > 0 && p.stock <= 5);
  ui.stockFill.style.setProperty('--fill', `${max ? Math.max(2, (100 * p.stock) / max) : 0}%`);
  const sold = st.sold.get(p.sku) || 0;
  ui.cardSold.hidden = sold <= 0;
  ui.cardSold.textContent = `${sold} sold in the last minute`;
  ui.buy.disabled = p.stock <= 0 || (st.ended && !st.replay);
  ui.buy.textContent = p.stock <= 0 ? 'Sold out' : `Buy now · ${money(p.price * qty, p.currency)}`;
  card.classList.add('visible');
  card.setAttribute('aria-hidden', 'false');
  renderCatalog();
}

function renderCatalog() {
  const st = viewer.state;
  const current = st.highlight && st.highlight.sku;
  const items = [...st.products.values()].map((p) =>
    el(
      'li',
      { class: `catalog-item${p.sku === current ? ' current' : ''}`, dataset: { sku: p.sku } },
      thumb(p),
      el(
        'div',
        { class: 'ci-main' },
        el('div', { class: 'ci-title' }, p.title),
        el('div', { class: 'ci-sub', dataset: { stock: String(p.stock) } }, p.stock > 0 ? `${p.stock} in stock` : 'Sold out'),
      ),
      el('div', { class: 'ci-price' }, money(p.price, p.currency)),
    ),
  );
  ui.catalog.replaceChildren(...items);
}

function bump(elm) {
  elm.classList.remove('bump');
  void elm.offsetWidth;
  elm.classList.add('bump');
}

function chatLine(from, text) {
  const line = el('div', { class: 'chat-line' }, el('b', {}, from), text);
  ui.chat.append(line);
  while (ui.chat.children.length > 3) ui.chat.firstElementChild.remove();
  setTimeout(() => line.classList.add('out'), 7000);
  setTimeout(() => line.remove(), 7700);
}

// ------------------------------------------------------------------------ SDK events

viewer.on('snapshot', (s) => {
  ui.title.textContent = s.show.title || show;
  document.title = `${s.show.title || show} · hawker`;
  for (const p of s.products) maxStock.set(p.sku, Math.max(maxStock.get(p.sku) || 0, p.stock));
  if (s.show.state === 'ended') setLive(false, 'Ended');
  renderCard();
});
viewer.on('highlight', () => renderCard());
viewer.on('unhighlight', () => renderCard());
viewer.on('price', (m) => {
  renderCard();
  if (card.dataset.sku === m.sku) {
    card.classList.remove('flash');
    void card.offsetWidth;
    card.classList.add('flash');
  }
});
viewer.on('stock', (m) => {
  renderCard();
  if (card.dataset.sku === m.sku) bump(ui.cardStock);
});
viewer.on('sold', () => renderCard());
viewer.on('chat', (m) => chatLine(m.from === 'seller' ? 'Seller' : m.from || 'Seller', m.text));
viewer.on('show_ended', () => {
  setLive(false, 'Ended');
  ui.status.textContent = 'The show has ended. Thanks for watching!';
  renderCard();
});
viewer.on('connected', () => {
  ui.status.textContent = frames ? '' : 'Waiting for the seller to go live…';
});
viewer.on('reconnecting', (d) => {
  setLive(false, 'Reconnecting');
  ui.status.textContent = `Reconnecting… (attempt ${d.attempt})`;
});
viewer.on('reconnected', () => {
  ui.status.textContent = '';
  toast('Back online');
});
viewer.on('error', (e) => {
  if (e.code === 'http' && e.status && e.status < 500 && e.status !== 409 && e.status !== 429) {
    ui.status.textContent = `Cannot watch this show: ${e.message}`;
  }
});

// Live while frames arrive; "waiting" when they stop (publisher gone).
let lastFrameAt = 0;
if ('requestVideoFrameCallback' in HTMLVideoElement.prototype) {
  const onFrame = () => {
    frames++;
    lastFrameAt = performance.now();
    if (!live) {
      setLive(true);
      ui.status.textContent = '';
    }
    video.requestVideoFrameCallback(onFrame);
  };
  video.requestVideoFrameCallback(onFrame);
} else {
  video.addEventListener('playing', () => {
    frames++;
    lastFrameAt = performance.now();
    setLive(true);
    ui.status.textContent = '';
  });
}
setInterval(() => {
  if (live && performance.now() - lastFrameAt > 2500 && !viewer.state.ended) {
    setLive(false, 'Paused');
    ui.status.textContent = 'The seller paused the stream…';
  }
}, 1000);

video.addEventListener('loadedmetadata', () => {
  if (video.videoWidth && video.videoHeight) {
    $('#player').style.setProperty('--video-aspect', `${video.videoWidth} / ${video.videoHeight}`);
  }
});
video.addEventListener('resize', () => {
  if (video.videoWidth && video.videoHeight) {
    $('#player').style.setProperty('--video-aspect', `${video.videoWidth} / ${video.videoHeight}`);
  }
});
video.addEventListener('volumechange', () => (ui.unmute.hidden = !video.muted));
video.addEventListener('playing', () => (ui.unmute.hidden = !video.muted));
ui.unmute.addEventListener('click', () => {
  viewer.unmute().catch(() => {});
  ui.unmute.hidden = true;
});

// Viewer count: from the session (the snapshot's, then a `viewers` message when it changes),
// the same number the studio shows. The listing below is only for before the session is up:
// polled before this viewer is connected it does not count this viewer yet.
function showViewers(n) {
  if (typeof n === 'number') ui.viewersN.textContent = compact(n);
}
viewer.on('viewers', (m) => showViewers(m.count));

async function refreshInfo() {
  try {
    const r = await fetch(`/shows/${encodeURIComponent(show)}/catalog.json`, { cache: 'no-store' });
    if (!r.ok) return;
    const info = await r.json();
    ui.viewers.hidden = !info.show.live;
    if (viewer.state.viewers === null) showViewers(info.show.viewers);
    if (!viewer.state.show) {
      // Before the session is up: title and catalog from the listing.
      ui.title.textContent = info.show.title;
      if (!viewer.state.products.size) {
        for (const p of info.products) viewer.state.products.set(p.sku, p);
        renderCatalog();
      }
    }
    ui.sub.textContent = replayMode ? 'Replay' : info.show.live ? '' : info.show.state === 'ended' ? 'Show ended' : 'Starting soon';
  } catch {
    /* next time */
  }
}
refreshInfo();
setInterval(refreshInfo, 5000);

// ------------------------------------------------------------------------ buying, asking

$('#qty-minus').addEventListener('click', () => {
  qty = Math.max(1, qty - 1);
  ui.qty.textContent = String(qty);
  renderCard();
});
$('#qty-plus').addEventListener('click', () => {
  const sku = card.dataset.sku;
  const p = sku && viewer.product(sku);
  qty = Math.min(10, p ? Math.max(1, Math.min(p.stock, qty + 1)) : qty + 1);
  ui.qty.textContent = String(qty);
  renderCard();
});

ui.buy.addEventListener('click', async () => {
  const sku = card.dataset.sku;
  if (!sku) return;
  const p = viewer.product(sku);
  ui.buy.disabled = true;
  ui.result.className = 'order-result wait';
  ui.result.textContent = 'Placing your order…';
  try {
    const o = await viewer.buy(sku, qty, { highlightId: card.dataset.highlightId });
    if (o.status === 'confirmed') {
      ui.result.className = 'order-result ok';
      ui.result.replaceChildren(
        `Order confirmed · ${o.qty} × ${p ? p.title : sku}`,
        el('span', { class: 'order-id' }, `#${o.order_id}`),
      );
    } else if (o.status === 'sold_out') {
      ui.result.className = 'order-result bad';
      ui.result.textContent = 'Sorry, that just sold out.';
    } else {
      ui.result.className = 'order-result bad';
      ui.result.textContent = `Order not placed${o.reason ? `: ${o.reason}` : ''}.`;
    }
    ui.result.dataset.status = o.status;
  } catch (e) {
    ui.result.className = 'order-result bad';
    ui.result.textContent = e.code === 'rate_limited' ? 'Easy there! Try again in a moment.' : `Order failed: ${e.message}`;
    ui.result.dataset.status = 'error';
  } finally {
    renderCard();
  }
});

ui.askForm.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const text = ui.askText.value.trim();
  if (!text) return;
  ui.askStatus.textContent = 'Sending…';
  try {
    await viewer.ask(text);
    ui.askText.value = '';
    ui.askStatus.textContent = 'Sent! The seller sees your question.';
  } catch (e) {
    ui.askStatus.textContent = e.code === 'rate_limited' ? 'Slow down a little, then ask again.' : `Not sent: ${e.message}`;
  }
  setTimeout(() => (ui.askStatus.textContent = ''), 5000);
});

// ------------------------------------------------------------------------ replay
// After the show: the recording plays with its cards on their frames; a scrub bar and the
// products the seller showed seek (the server starts at the keyframe at or before the time).

/** Whether the show is over and has a recording to replay (the catalog listing says so). */
async function offersReplay(id) {
  try {
    const r = await fetch(`/shows/${encodeURIComponent(id)}/catalog.json`, { cache: 'no-store' });
    if (!r.ok) return false;
    const info = await r.json();
    return Boolean(info.show && info.show.replay);
  } catch {
    return false;
  }
}

const replayUi = {
  bar: $('#replay-bar'),
  scrub: /** @type {HTMLInputElement} */ ($('#replay-scrub')),
  time: $('#replay-time'),
  duration: $('#replay-duration'),
  box: $('#replay-chapters-box'),
  chapters: $('#replay-chapters'),
};
let scrubbing = false;

function clock(s) {
  const t = Math.max(0, Math.floor(s));
  const h = Math.floor(t / 3600);
  const m = Math.floor((t % 3600) / 60);
  const ss = String(t % 60).padStart(2, '0');
  return h ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

async function seekTo(t) {
  ui.status.textContent = 'Seeking…';
  try {
    await viewer.seek(t);
    ui.status.textContent = '';
  } catch (e) {
    ui.status.textContent = `Cannot seek there: ${e.message}`;
  }
}

function renderReplay() {
  const r = viewer.state.replay;
  if (!r) return;
  replayUi.bar.hidden = false;
  replayUi.scrub.max = String(r.duration);
  replayUi.duration.textContent = clock(r.duration);
  replayUi.box.hidden = r.chapters.length === 0;
  const items = r.chapters.map((c) => {
    const p = viewer.product(c.sku);
    return el(
      'li',
      { dataset: { t: String(c.t), sku: c.sku, highlightId: c.highlight_id } },
      el(
        'button',
        { type: 'button', onclick: () => seekTo(c.t) },
        el('span', { class: 'rc-time' }, clock(c.t)),
        el('span', {}, p ? p.title : c.sku),
      ),
    );
  });
  replayUi.chapters.replaceChildren(...items);
}

function renderPosition() {
  const at = viewer.position();
  if (at === null) return;
  if (!scrubbing) replayUi.scrub.value = String(at);
  replayUi.time.textContent = clock(at);
  const h = viewer.state.highlight;
  for (const li of replayUi.chapters.children) {
    li.classList.toggle('current', Boolean(h && li.dataset.highlightId === h.highlight_id));
  }
}

if (replayMode) {
  viewer.on('snapshot', renderReplay);
  viewer.on('replay_ended', () => {
    ui.status.textContent = 'End of the replay.';
  });
  replayUi.scrub.addEventListener('input', () => {
    scrubbing = true;
    replayUi.time.textContent = clock(Number(replayUi.scrub.value));
  });
  replayUi.scrub.addEventListener('change', () => {
    scrubbing = false;
    seekTo(Number(replayUi.scrub.value));
  });
  setInterval(renderPosition, 250);
  // For embedding pages and tests.
  window.hawkerWatch.seek = seekTo;
}

// ------------------------------------------------------------------------ quality (simulcast)

// The quality menu: Auto / High / Medium / Low caps the layer the server sends (the SDK's
// setQuality), and the label shows the layer received now (the server's `layer` message) with
// the decoded height. Hidden while the seller sends one layer. ?quality= sets the first cap.

/** The cap to start with: ?quality=, else auto. @returns {'auto'|'low'|'medium'|'high'} */
function initialQuality() {
  const q = new URLSearchParams(location.search).get('quality');
  return q === 'low' || q === 'medium' || q === 'high' ? q : 'auto';
}

const quality = {
  box: $('#quality'),
  now: $('#quality-now'),
  select: /** @type {HTMLSelectElement} */ ($('#quality-select')),
};
const LAYER_NAMES = ['Low', 'Medium', 'High'];

function renderQuality() {
  const l = viewer.layer;
  quality.box.hidden = !l || l.layers < 2;
  quality.select.value = viewer.quality;
  if (!l) return;
  // Layers are numbered from the lowest, like the caps (low = 0, medium = 1, high = 2).
  const name = LAYER_NAMES[Math.min(l.layer, LAYER_NAMES.length - 1)];
  const h = video.videoHeight;
  quality.now.textContent = h ? `${name} · ${h}p` : name;
  quality.box.dataset.layer = String(l.layer);
  quality.box.dataset.cap = viewer.quality;
}

quality.select.addEventListener('change', () => {
  const q = /** @type {'auto'|'low'|'medium'|'high'} */ (quality.select.value);
  viewer.setQuality(q);
  renderQuality();
});
viewer.on('layer', renderQuality);
video.addEventListener('resize', renderQuality);
renderQuality();
