// Small DOM helpers shared by the hawker pages (index, studio, watch). No framework.

/**
 * Create an element. `attrs`: class, dataset (object), on<event> handlers, other attributes.
 * Children: strings, nodes, arrays, null/false (skipped).
 * @returns {HTMLElement}
 */
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') e.addEventListener(k.slice(2), v);
    else if (k === 'text') e.textContent = v;
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  append(e, children);
  return e;
}

function append(e, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(e, c);
    else e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** `document.querySelector`. */
export const $ = (sel, root = document) => root.querySelector(sel);

/** Digits after the decimal point of a currency (2 for USD, 0 for JPY). */
export function fractionDigits(currency) {
  try {
    return new Intl.NumberFormat('en', { style: 'currency', currency }).resolvedOptions().maximumFractionDigits;
  } catch {
    return 2;
  }
}

/** Format a price given in minor units. */
export function money(minor, currency = 'USD') {
  const d = fractionDigits(currency);
  const v = minor / 10 ** d;
  try {
    return new Intl.NumberFormat(undefined, { style: 'currency', currency }).format(v);
  } catch {
    return `${v.toFixed(d)} ${currency}`;
  }
}

/** A stable hue for a string (product tiles without an image). */
export function hue(s) {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return Math.abs(h) % 360;
}

/** Initials of a title: "Brass desk lamp" → "BD". */
export function initials(title) {
  return (title || '?')
    .split(/\s+/)
    .filter(Boolean)
    .slice(0, 2)
    .map((w) => w[0].toUpperCase())
    .join('');
}

/** A product picture: the image, or a coloured tile with the initials. */
export function thumb(p, cls = 'thumb') {
  if (p.image_url) {
    const img = el('img', { class: cls, src: p.image_url, alt: '', loading: 'lazy', referrerpolicy: 'no-referrer' });
    return img;
  }
  const t = el('div', { class: `${cls} thumb-tile`, 'aria-hidden': 'true' }, initials(p.title));
  const h = hue(p.sku || p.title || '');
  t.style.setProperty('--h', String(h));
  return t;
}

/** "12:04:05" */
export function clock(ms = Date.now()) {
  return new Date(ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

/** "in 5 min", "tomorrow 18:00", … for a scheduled start. */
export function when(ms) {
  if (!ms) return 'Not scheduled';
  const d = new Date(ms);
  const diff = ms - Date.now();
  if (diff > 0 && diff < 3600e3) return `Starts in ${Math.max(1, Math.round(diff / 60e3))} min`;
  return `Starts ${d.toLocaleString([], { weekday: 'short', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' })}`;
}

/** Show id from `/studio/{id}` or `/watch/{id}`. */
export function showFromPath() {
  const parts = location.pathname.split('/').filter(Boolean);
  return decodeURIComponent(parts[1] || 'demo');
}

/** A short-lived notice at the bottom of the page. */
export function toast(text, kind = 'info') {
  let box = $('#toasts');
  if (!box) {
    box = el('div', { id: 'toasts', class: 'toasts', 'aria-live': 'polite' });
    document.body.append(box);
  }
  const t = el('div', { class: `toast toast-${kind}` }, text);
  box.append(t);
  setTimeout(() => t.classList.add('out'), 3600);
  setTimeout(() => t.remove(), 4000);
}

/** Compact number: 1234 → "1.2K". */
export function compact(n) {
  try {
    return new Intl.NumberFormat(undefined, { notation: 'compact' }).format(n);
  } catch {
    return String(n);
  }
}
