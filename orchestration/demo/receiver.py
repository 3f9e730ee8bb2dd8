"""A webhook receiver for the demo, on 127.0.0.1: it keeps what it is sent and checks each
signature, so the demo can show an alert arriving as a customer's endpoint would see it."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from integrations.webhooks.signing import verify


@dataclass
class Received:
    url: str
    secret: str
    bodies: list[dict] = field(default_factory=list)
    signatures_valid: list[bool] = field(default_factory=list)


@contextmanager
def webhook_receiver(secret: str) -> Iterator[Received]:
    received = Received("", secret)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            signed = verify(secret, body, self.headers.get("Meterbook-Signature"))
            with lock:
                received.bodies.append(json.loads(body))
                received.signatures_valid.append(signed)
            self.send_response(200 if signed else 401)
            self.end_headers()

        def log_message(self, *args) -> None:  # the demo prints its own lines
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    received.url = f"http://127.0.0.1:{server.server_address[1]}/meterbook-alerts"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield received
    finally:
        server.shutdown()
        server.server_close()
