"""A hawker webhook receiver in Python (standard library only): verifies X-Hawker-Signature
over the raw body, acknowledges with 204, and deduplicates retries by X-Hawker-Delivery.

    HAWKER_WEBHOOK_SECRET=... PORT=8788 python3 examples/webhooks/receiver.py

Point hawker at it with `commerce.webhook_urls = ["http://127.0.0.1:8788/hooks/hawker"]`.
The secret is `commerce.webhook_secret`, or, when that is unset, the key that
`hawker webhook-secret` prints (derived from the token secret, never the token secret itself).
Prints one JSON line per request, e.g. {"delivery": "3", "event": "order.created", "verified": true, ...}.
"""

import hashlib
import hmac
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SECRET = os.environ["HAWKER_WEBHOOK_SECRET"].encode()
seen: set = set()  # in production: a unique key in your database


def verify(secret: bytes, raw_body: bytes, header: str) -> bool:
    """`sha256=<hex HMAC-SHA256(secret, raw body)>`, compared in constant time."""
    expected = "sha256=" + hmac.new(secret, raw_body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header or "")


def log(**fields) -> None:
    print(json.dumps(fields), flush=True)


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        if self.path != "/hooks/hawker":
            self.send_response(404)
            self.end_headers()
            return
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))  # exact bytes
        delivery = self.headers.get("X-Hawker-Delivery")
        if not verify(SECRET, raw, self.headers.get("X-Hawker-Signature", "")):
            log(delivery=delivery, verified=False)
            self.send_response(401)
            self.end_headers()
            self.wfile.write(b"bad signature")
            return
        event = json.loads(raw)
        duplicate = delivery in seen
        seen.add(delivery)
        if not duplicate:
            pass  # handle it: event["type"] is order.created, show.live or show.ended
        log(delivery=delivery, event=event["type"], verified=True, duplicate=duplicate,
            data=event["data"])
        self.send_response(204)  # any 2xx acknowledges; anything else is retried
        self.end_headers()

    def log_message(self, *args) -> None:  # one JSON line per request is enough
        pass


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ.get("PORT", "8788"))), Handler)
    log(listening=f"http://127.0.0.1:{server.server_address[1]}/hooks/hawker")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        sys.exit(0)
