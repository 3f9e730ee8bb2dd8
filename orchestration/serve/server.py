"""Running the API under uvicorn: `serve` in the foreground until SIGINT or SIGTERM, and
`running_server` in a background thread for the tests and the demo."""

from __future__ import annotations

import gc
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

import uvicorn

from orchestration.interrupts import stopped
from orchestration.serve.app import create_app

STARTUP_SECONDS = 60.0  # the first snapshot is loaded before the server listens
SHUTDOWN_SECONDS = 10.0
KEEP_ALIVE_SECONDS = 75


def serve(
    home: Path,
    host: str = "127.0.0.1",
    port: int = 8484,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until SIGINT or SIGTERM, then return once open requests are answered;
    `on_ready(url)` once the socket listens. OSError if it cannot listen (uvicorn logs why)."""
    server = _Server(_config(home, host, port), on_ready, freeze_gc=True)
    try:
        server.run()
    except SystemExit as exc:  # uvicorn's way out when it cannot start
        if server.started:
            raise
        raise OSError(f"the API could not listen on {host}:{port}") from exc


@contextmanager
def running_server(
    home: Path, host: str = "127.0.0.1", port: int = 0, poll_seconds: float = 0.2
) -> Iterator[str]:
    """The API in a background thread while the block runs; yields its base URL (port 0: a
    free port, the one bound)."""
    ready = threading.Event()
    urls: list[str] = []

    def listening(url: str) -> None:
        urls.append(url)
        ready.set()

    server = _Server(_config(home, host, port, poll_seconds), listening)
    thread = threading.Thread(target=server.run, name="meterbook-serve", daemon=True)
    thread.start()
    try:
        _wait_until_ready(ready, thread)
        yield urls[0]
    finally:
        server.should_exit = True
        thread.join(SHUTDOWN_SECONDS)
        if thread.is_alive():
            server.force_exit = True  # connections that did not close in time are dropped
            thread.join(SHUTDOWN_SECONDS)


def _wait_until_ready(ready: threading.Event, thread: threading.Thread) -> None:
    waited = 0.0
    while not ready.wait(0.05):
        waited += 0.05
        if not thread.is_alive():
            raise RuntimeError("the API server stopped before it listened (see its log)")
        if waited >= STARTUP_SECONDS:
            raise RuntimeError(f"the API server did not listen within {STARTUP_SECONDS:.0f} s")


def _config(home: Path, host: str, port: int, poll_seconds: float = 0.2) -> uvicorn.Config:
    return uvicorn.Config(
        create_app(home, poll_seconds),
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="on",  # the lifespan loads the snapshot and starts and stops its poller
        # uvicorn's 5 s closed idle keep-alive connections under producers that POST every
        # few seconds, racing their next request; 75 s is what load balancers commonly keep
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
    )


class _Server(uvicorn.Server):
    def __init__(
        self,
        config: uvicorn.Config,
        on_ready: Callable[[str], None] | None,
        freeze_gc: bool = False,
    ) -> None:
        super().__init__(config)
        self._on_ready, self._freeze_gc = on_ready, freeze_gc

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self._freeze_gc:
            # FastAPI, pydantic and uvicorn leave ~50,000 objects the collector tracks, and a
            # full collection walked them all in 25-50 ms with the GIL held (seen as the
            # slowest answers under load); what exists once started lives as long as the
            # process, so it is moved out of the collector's sight. Only in the process of
            # its own (serve), never inside a test's or the demo's.
            gc.freeze()
        if self.started and self._on_ready is not None:
            self._on_ready(self._url())

    def _url(self) -> str:
        host, port = self.servers[0].sockets[0].getsockname()[:2]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn's own re-raises the signal once it has shut down, which would end the
        # command with KeyboardInterrupt or SIGTERM's default death; a stop asked for is the
        # normal end of `meterbook serve`, so the signal is taken here and serve() returns
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        taken = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, self._stop) for sig in taken}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _stop(self, sig: int, frame: FrameType | None) -> None:
        stopped()  # orchestration.interrupts' watcher, if the CLI started it, need not repeat
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True  # a second Ctrl-C: stop without waiting for connections
        self.should_exit = True
