// The index page: live and scheduled shows from /shows.json, refreshed every few seconds.
import { el, $, hue, initials, when, compact } from './ui.js';

function card(s) {
  const cover = el(
    'div',
    { class: 'show-cover' },
    el('span', { class: 'cover-initials', 'aria-hidden': 'true' }, initials(s.title)),
    s.live
      ? el('span', { class: 'badge badge-live' }, 'Live')
      : el('span', { class: 'badge badge-sched' }, s.state === 'live' ? 'Starting' : 'Scheduled'),
    s.live ? el('span', { class: 'pill-dark' }, el('span', { class: 'eye', 'aria-hidden': 'true' }), `${compact(s.viewers)}`) : null,
  );
  cover.style.setProperty('--h', String(hue(s.id)));
  return el(
    'li',
    {},
    el(
      'a',
      { class: 'show-card', href: `/watch/${encodeURIComponent(s.id)}`, dataset: { show: s.id } },
      cover,
      el(
        'div',
        { class: 'show-body' },
        el('strong', {}, s.title),
        el('span', {}, s.live ? `${s.viewers} watching now` : when(s.scheduled_at)),
      ),
    ),
  );
}

function fill(list, shows, emptyText) {
  list.replaceChildren(...(shows.length ? shows.map(card) : [el('li', { class: 'empty' }, emptyText)]));
}

async function refresh() {
  try {
    const r = await fetch('/shows.json', { cache: 'no-store' });
    if (!r.ok) throw new Error(`${r.status}`);
    const { shows } = await r.json();
    fill($('#live'), shows.filter((s) => s.live), 'Nothing is live right now.');
    fill($('#scheduled'), shows.filter((s) => !s.live), 'No shows scheduled.');
  } catch (e) {
    fill($('#live'), [], `Could not load shows (${e.message}).`);
  }
}

refresh();
setInterval(refresh, 5000);
