// A hawker webhook receiver in Node (no dependencies): verifies X-Hawker-Signature over the
// raw body, acknowledges with 204, and deduplicates retries by X-Hawker-Delivery.
//
//   HAWKER_WEBHOOK_SECRET=... PORT=8787 node examples/webhooks/receiver.mjs
//
// Point hawker at it with `commerce.webhook_urls = ["http://127.0.0.1:8787/hooks/hawker"]`.
// The secret is `commerce.webhook_secret`, or, when that is unset, the key that
// `hawker webhook-secret` prints (derived from the token secret, never the token secret itself).
// Prints one JSON line per request, e.g. {"delivery":"3","event":"order.created","verified":true,...}.
import crypto from 'node:crypto';
import http from 'node:http';

const secret = process.env.HAWKER_WEBHOOK_SECRET;
if (!secret) throw new Error('set HAWKER_WEBHOOK_SECRET');
const seen = new Set(); // in production: a unique key in your database

/** `sha256=<hex HMAC-SHA256(secret, raw body)>`, compared in constant time. */
export function verify(secret, rawBody, header) {
  const expected = 'sha256=' + crypto.createHmac('sha256', secret).update(rawBody).digest('hex');
  const a = Buffer.from(expected);
  const b = Buffer.from(header ?? '');
  return a.length === b.length && crypto.timingSafeEqual(a, b);
}

const server = http.createServer((req, res) => {
  if (req.method !== 'POST' || req.url !== '/hooks/hawker') {
    res.writeHead(404).end();
    return;
  }
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const raw = Buffer.concat(chunks); // verify these exact bytes, before parsing
    const delivery = req.headers['x-hawker-delivery'];
    const ok = verify(secret, raw, req.headers['x-hawker-signature']);
    if (!ok) {
      console.log(JSON.stringify({ delivery, verified: false }));
      res.writeHead(401).end('bad signature');
      return;
    }
    const event = JSON.parse(raw.toString('utf8'));
    const duplicate = seen.has(delivery);
    seen.add(delivery);
    if (!duplicate) {
      // Handle it: event.type is order.created, show.live or show.ended; event.data the fact.
    }
    console.log(JSON.stringify({ delivery, event: event.type, verified: true, duplicate, data: event.data }));
    res.writeHead(204).end(); // any 2xx acknowledges; anything else is retried
  });
});

server.listen(Number(process.env.PORT || 8787), '127.0.0.1', () => {
  console.log(JSON.stringify({ listening: `http://127.0.0.1:${server.address().port}/hooks/hawker` }));
});
