// The seller's studio: camera preview, go live, show products on the frame on screen, prices,
// live viewer count, incoming questions and orders.
import { publish } from '/sdk/hawker.js';
import { el, $, money, thumb, showFromPath, toast, clock, fractionDigits } from './ui.js';

const show = showFromPath();
const preview = /** @type {HTMLVideoElement} */ ($('#preview'));
const ui = {
  title: $('#show-title'),
  status: $('#status'),
  viewers: $('#viewers'),
  previewStatus: $('#preview-status'),
  golive: $('#golive'),
  end: $('#end'),
  conn: $('#conn'),
  tokenForm: $('#token-form'),
  token: $('#token'),
  catalog: $('#catalog'),
  catalogNote: $('#catalog-note'),
  feed: $('#feed'),
  ordersCount: $('#orders-count'),
  questionsCount: $('#questions-count'),
  onair: $('#onair'),
  onairTitle: $('#onair-title'),
  hide: $('#hide'),
  viewerLink: $('#viewer-link'),
  simulcast: /** @type {HTMLInputElement} */ ($('#simulcast')),
};

document.title = `Studio · ${show} · hawker`;
ui.title.textContent = show;
ui.viewerLink.href = `/watch/${encodeURIComponent(show)}`;

/** @type {import('/sdk/hawker.js').Publisher|null} */
let studio = null;
/** @type {MediaStream|null} */
let stream = null;
/** sku → product (as the studio knows it). */
let products = new Map();
/** sku on screen, or null. */
let onAir = null;
// The show has ended (here, or the server said so): it cannot go live again.
let ended = false;
let orders = 0;
let questions = 0;

// The token: from the #token= fragment (then kept for this tab only and removed from the
// address bar), or pasted into the form.
const TOKEN_KEY = `hawker.token.${show}`;
function takeToken() {
  const m = location.hash.match(/(?:^#|&)token=([^&]+)/);
  if (m) {
    const t = decodeURIComponent(m[1]);
    try {
      sessionStorage.setItem(TOKEN_KEY, t);
    } catch {}
    history.replaceState(null, '', location.pathname + location.search);
    return t;
  }
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}
let token = takeToken();

window.hawkerStudio = {
  show,
  get publisher() {
    return studio;
  },
  get stream() {
    return stream;
  },
  get simulcast() {
    return !!studio && !!studio.opts.simulcast;
  },
};

// ------------------------------------------------------------------------ state display

function setStatus(kind, text) {
  ui.status.className = `badge ${kind === 'live' ? 'badge-live' : kind === 'wait' ? 'badge-wait' : 'badge-off'}`;
  ui.status.textContent = text;
  document.body.dataset.state = kind;
}

function refreshButtons() {
  const live = !!studio;
  ui.golive.disabled = live || ended || !stream || !token;
  ui.golive.hidden = live;
  ui.end.disabled = !live;
  ui.end.hidden = !live;
  ui.simulcast.disabled = live;
  ui.tokenForm.hidden = !!token;
  for (const b of ui.catalog.querySelectorAll('button')) b.disabled = !live;
  ui.catalogNote.textContent = live ? 'Tap “Show now” while the product is in the shot.' : 'Go live to show products.';
}

function renderCatalog() {
  const rows = [...products.values()].map((p) => {
    const digits = fractionDigits(p.currency);
    const input = el('input', {
      type: 'number',
      min: '0',
      step: digits ? (1 / 10 ** digits).toFixed(digits) : '1',
      value: (p.price / 10 ** digits).toFixed(digits),
      'aria-label': `Price of ${p.title}`,
      class: 'price-input',
    });
    const setPrice = el('button', { type: 'button', class: 'btn btn-outline set-price' }, 'Set');
    const submit = () => {
      const v = Number(input.value);
      if (!Number.isFinite(v) || v < 0) return toast('Enter a price of 0 or more', 'bad');
      const minor = Math.round(v * 10 ** digits);
      try {
        studio.setPrice(p.sku, minor);
        p.price = minor;
        toast(`${p.title}: now ${money(minor, p.currency)}`, 'ok');
        renderCatalog();
      } catch (e) {
        toast(e.message, 'bad');
      }
    };
    setPrice.addEventListener('click', submit);
    input.addEventListener('keydown', (e) => e.key === 'Enter' && submit());
    const isOn = onAir === p.sku;
    const action = el(
      'button',
      { type: 'button', class: `btn ${isOn ? 'btn-outline' : 'btn-primary'} show-now`, dataset: { sku: p.sku } },
      isOn ? 'Hide' : 'Show now',
    );
    action.addEventListener('click', () => (onAir === p.sku ? hide() : showNow(p.sku)));
    const low = p.stock <= 5;
    return el(
      'li',
      { class: `sp${isOn ? ' on-air' : ''}`, dataset: { sku: p.sku } },
      thumb(p),
      el(
        'div',
        { class: 'sp-main' },
        el('div', { class: 'sp-title' }, p.title, isOn ? el('span', { class: 'tag-onair' }, 'On screen') : null),
        el(
          'div',
          { class: 'sp-meta' },
          `${p.sku} · `,
          el('span', { class: `sp-stock${low ? ' low' : ''}`, dataset: { stock: String(p.stock) } }, p.stock > 0 ? `${p.stock} in stock` : 'sold out'),
        ),
      ),
      el('div', { class: 'sp-price' }, el('span', { class: 'cur' }, p.currency), input, setPrice),
      el('div', { class: 'sp-action' }, action),
    );
  });
  ui.catalog.replaceChildren(...rows);
  const p = onAir && products.get(onAir);
  ui.onair.hidden = !p;
  ui.onairTitle.textContent = p ? p.title : '';
  refreshButtons();
}

/** "anon-0c9f3a…" → "Viewer 0c9f3a" */
function who(sub) {
  if (!sub) return 'Viewer';
  const m = /^anon-([0-9a-zA-Z]{1,8})/.exec(sub);
  return m ? `Viewer ${m[1]}` : sub;
}

let revenue = new Map(); // currency → minor units

function renderStats() {
  ui.ordersCount.textContent = String(orders);
  ui.questionsCount.textContent = String(questions);
  $('#stat-orders').textContent = String(orders);
  $('#stat-questions').textContent = String(questions);
  $('#stat-revenue').textContent = revenue.size ? [...revenue].map(([c, v]) => money(v, c)).join(' + ') : money(0, 'USD');
}

function feed(kind, icon, who, text, at = Date.now()) {
  const empty = ui.feed.querySelector('.empty');
  if (empty) empty.remove();
  const item = el(
    'li',
    { class: `fi fi-${kind}` },
    el('div', { class: 'fi-icon', 'aria-hidden': 'true' }, icon),
    el('div', {}, el('div', { class: 'fi-head' }, el('b', {}, who), el('time', {}, clock(at))), el('div', { class: 'fi-text' }, text)),
  );
  ui.feed.prepend(item);
  while (ui.feed.children.length > 200) ui.feed.lastElementChild.remove();
  return item;
}

// ------------------------------------------------------------------------ actions

function showNow(sku) {
  if (!studio) return;
  try {
    const sent = studio.highlight(sku);
    onAir = sku;
    window.hawkerStudio.lastAction = sent;
    renderCatalog();
  } catch (e) {
    toast(e.message, 'bad');
  }
}

function hide() {
  if (!studio || !onAir) return;
  try {
    window.hawkerStudio.lastAction = studio.unhighlight();
    onAir = null;
    renderCatalog();
  } catch (e) {
    toast(e.message, 'bad');
  }
}
ui.hide.addEventListener('click', hide);

async function goLive() {
  if (studio || !stream || !token) return;
  ui.golive.disabled = true;
  setStatus('wait', 'Connecting');
  ui.conn.textContent = 'Connecting…';
  try {
    const s = await publish(`/whip/${encodeURIComponent(show)}`, token, stream, { preview, simulcast: simulcastWanted() });
    studio = s;
    wire(s);
    setStatus('live', 'Live');
    ui.conn.textContent = '';
    toast('You are live!', 'ok');
  } catch (e) {
    // 409 is also the answer for a show that has ended (the server's reason says which).
    ended = e.status === 409 && /ended/.test(String(e.message));
    setStatus(ended ? 'ended' : 'off', ended ? 'Ended' : 'Offline');
    const why =
      e.status === 401 || e.status === 403
        ? 'The token is not valid for this show.'
        : ended
          ? 'This show has ended; create a new show to go live again.'
          : e.status === 409
            ? 'This show already has a live publisher (another tab?).'
            : e.message;
    ui.conn.textContent = why;
    toast(why, 'bad');
    if (e.status === 401 || e.status === 403) {
      token = null;
      try {
        sessionStorage.removeItem(TOKEN_KEY);
      } catch {}
    }
  }
  refreshButtons();
}

// End the show, not only this tab's stream: the show becomes `ended` (viewers get
// `show_ended`, its replay opens) with the publisher token the studio went live with. The
// WHIP session is closed first (its DELETE answers 200; ending the show first would remove
// the session and the DELETE would find nothing), so a failed request leaves the show
// off air but not ended.
async function end() {
  const s = studio;
  if (!s) return;
  studio = null;
  onAir = null;
  setStatus('off', 'Offline');
  ui.viewers.textContent = '0';
  $('#stat-viewers').textContent = '0';
  renderCatalog();
  await s.close();
  let why = null;
  try {
    const r = await fetch(`/api/v1/shows/${encodeURIComponent(show)}/end`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}` },
    });
    if (!r.ok) why = `the server answered ${r.status}`;
  } catch (e) {
    why = e.message;
  }
  if (why) {
    toast(`Stream stopped, but the show could not be ended: ${why}`, 'bad');
  } else {
    ended = true;
    setStatus('ended', 'Ended');
    toast('Show ended');
  }
  refreshButtons();
}

function wire(s) {
  s.on('snapshot', (snap) => {
    ui.title.textContent = snap.show.title;
    products = new Map(snap.products.map((p) => [p.sku, { ...p }]));
    onAir = snap.highlight ? snap.highlight.sku : null;
    ui.viewers.textContent = String(snap.show.viewers || 0);
    renderCatalog();
  });
  s.on('viewers', (m) => {
    ui.viewers.textContent = String(m.count);
    $('#stat-viewers').textContent = String(m.count);
  });
  s.on('question', (q) => {
    questions++;
    renderStats();
    feed('question', '?', who(q.from), q.text, q.at_ms);
  });
  s.on('order_placed', (o) => {
    orders++;
    const p = products.get(o.sku);
    if (p) {
      p.stock = Math.max(0, p.stock - o.qty);
      revenue.set(p.currency, (revenue.get(p.currency) || 0) + p.price * o.qty);
      renderCatalog();
    }
    renderStats();
    const item = feed('order', '$', who(o.viewer), [
      el('strong', {}, `${o.qty} × ${p ? p.title : o.sku}`),
      p ? ` · ${money(p.price * o.qty, p.currency)}` : '',
      el('div', { class: 'fi-id' }, `order ${o.order_id}`),
    ]);
    item.dataset.orderId = o.order_id;
  });
  s.on('error', (e) => {
    feed('error', '!', 'Server', `${e.code}: ${e.message}`);
  });
  s.on('reconnecting', (d) => {
    setStatus('wait', 'Reconnecting');
    ui.conn.textContent = `Connection lost (${d.reason}); retrying in ${Math.round(d.delayMs / 100) / 10}s…`;
  });
  s.on('reconnected', () => {
    setStatus('live', 'Live');
    ui.conn.textContent = '';
    toast('Reconnected', 'ok');
  });
  s.on('closed', () => {
    if (studio === s) {
      studio = null;
      setStatus('off', 'Offline');
      renderCatalog();
    }
  });
}

ui.golive.addEventListener('click', goLive);
ui.end.addEventListener('click', end);
ui.tokenForm.addEventListener('submit', (e) => {
  e.preventDefault();
  const t = ui.token.value.trim();
  if (!t) return;
  token = t;
  try {
    sessionStorage.setItem(TOKEN_KEY, t);
  } catch {}
  ui.token.value = '';
  refreshButtons();
});
window.addEventListener('pagehide', () => studio && studio.close());

// ------------------------------------------------------------------------ simulcast

// Simulcast (three layers from the 720p camera, the SDK's default layers) is on unless the
// seller unticks "Adaptive quality" or the page is opened with ?simulcast=0 (kept per tab).
const SIMULCAST_KEY = 'hawker.simulcast';
function initSimulcast() {
  const q = new URLSearchParams(location.search).get('simulcast');
  let on = true;
  if (q !== null) on = !['0', 'false', 'off', 'no'].includes(q.toLowerCase());
  else {
    try {
      on = sessionStorage.getItem(SIMULCAST_KEY) !== 'off';
    } catch {}
  }
  ui.simulcast.checked = on;
  ui.simulcast.addEventListener('change', () => {
    try {
      sessionStorage.setItem(SIMULCAST_KEY, ui.simulcast.checked ? 'on' : 'off');
    } catch {}
  });
}

/** Whether to publish simulcast: the toggle, and a camera big enough for three layers. */
function simulcastWanted() {
  if (!ui.simulcast.checked || !stream) return false;
  const v = stream.getVideoTracks()[0];
  const h = v ? v.getSettings().height || 0 : 0;
  // Chromium sends three layers from 960×540 up; a smaller camera's layers would be too small
  // to be worth the encoder time (a 640×360 quarter layer is 160×90): send one stream.
  return h >= 540;
}

// ------------------------------------------------------------------------ start-up

async function startCamera() {
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      video: { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30 } },
      audio: { echoCancellation: true, noiseSuppression: true },
    });
    preview.srcObject = stream;
    await preview.play().catch(() => {});
    ui.previewStatus.textContent = '';
  } catch (e) {
    ui.previewStatus.textContent = `Camera unavailable: ${e.message}. Allow camera and microphone access, then reload.`;
  }
  refreshButtons();
}

async function loadCatalog() {
  try {
    const r = await fetch(`/shows/${encodeURIComponent(show)}/catalog.json`, { cache: 'no-store' });
    if (!r.ok) return;
    const info = await r.json();
    if (studio) return; // the snapshot is fresher
    ui.title.textContent = info.show.title;
    products = new Map(info.products.map((p) => [p.sku, p]));
    renderCatalog();
  } catch {
    /* offline: the snapshot fills it */
  }
}

setStatus('off', 'Offline');
initSimulcast();
renderStats();
refreshButtons();
loadCatalog();
startCamera();
