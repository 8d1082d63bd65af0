// @ts-check
// A third-party page embedding a hawker show: the player, the product card the seller shows
// (revealed on the video frame they showed it), and a Buy button. Type-checked against the
// package's declarations (scripts/test.sh: tsc --noEmit -p examples/viewer).
import { watch } from '@hawker/sdk';

const params = new URLSearchParams(location.search);
const server = params.get('server') || 'http://127.0.0.1:8080'; // your hawker's public URL
const showId = params.get('show') || 'demo';

/** @param {string} id */
const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));
const video = /** @type {HTMLVideoElement} */ ($('player'));
const card = $('card');
const buy = /** @type {HTMLButtonElement} */ ($('buy'));

const show = watch(`${server}/whep/${encodeURIComponent(showId)}`, video);

/** Draw the card of the highlighted product, as of the frame on screen. */
function render() {
  const h = show.state.highlight;
  const p = h && show.product(h.sku);
  card.hidden = !p;
  if (!h || !p) return;
  const price = new Intl.NumberFormat(undefined, { style: 'currency', currency: p.currency }).format(p.price / 100);
  $('card-title').textContent = p.title;
  $('card-price').textContent = price;
  $('card-stock').textContent = p.stock > 0 ? `${p.stock} left` : 'sold out';
  /** @type {HTMLImageElement} */ ($('card-image')).src = p.image_url || '';
  card.dataset.sku = h.sku;
  card.dataset.highlightId = h.highlight_id;
  buy.disabled = p.stock <= 0;
}

for (const type of ['snapshot', 'highlight', 'unhighlight', 'price', 'stock']) show.on(type, render);
show.on('viewers', (/** @type {{count: number}} */ v) => ($('viewers').textContent = `${v.count} watching`));
show.on('show_ended', () => ($('result').textContent = 'The show has ended.'));

buy.addEventListener('click', async () => {
  const sku = card.dataset.sku;
  if (!sku) return;
  buy.disabled = true;
  try {
    const order = await show.buy(sku, 1, { highlightId: card.dataset.highlightId });
    $('result').textContent =
      order.status === 'confirmed' ? `Order ${order.order_id} confirmed` : `Not bought: ${order.reason}`;
  } catch (e) {
    $('result').textContent = `Could not buy: ${e instanceof Error ? e.message : e}`;
  } finally {
    render();
  }
});
