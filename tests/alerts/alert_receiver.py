"""A real webhook receiver for the delivery tests: an HTTP server on 127.0.0.1 (port 0) in a
thread that records every request (method, path, headers, body) and answers from a script.

    receiver.script(500, 500, 200)          # then `receiver.default` (200) for ever after
    receiver.script(Answer(200, delay=1))   # answers after a second: a client timeout
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PATH = "/hooks/meterbook"


@dataclass(frozen=True)
class Answer:
    status: int = 200
    delay: float = 0.0
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes


class Receiver:
    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.default = Answer(200)
        self._script: deque[Answer] = deque()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        # a handler still sleeping out a timeout answer must not hold up the test's teardown
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_port}{PATH}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    def script(self, *answers: Answer | int) -> None:
        with self._lock:
            self._script.extend(a if isinstance(a, Answer) else Answer(a) for a in answers)

    def keys(self) -> list[str]:
        return [r.headers.get("idempotency-key", "") for r in self.requests]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _take(self, request: Received) -> Answer:
        with self._lock:
            self.requests.append(request)
            return self._script.popleft() if self._script else self.default


def _handler_for(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {name.lower(): value for name, value in self.headers.items()}
            answer = receiver._take(Received(self.command, self.path, headers, body))
            time.sleep(answer.delay)
            try:
                self.send_response(answer.status)
                for name, value in answer.headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)
            except OSError:
                pass  # the client stopped waiting (the timeout tests)

        do_PUT = do_GET = do_POST

        def log_message(self, format, *args) -> None:  # noqa: A002 - the base class's name
            pass

    return Handler
