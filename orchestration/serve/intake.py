"""The state behind `POST /v1/events`: the landing writer, the catalog's keys and settings,
and what the ingest has read, kept current by one background thread.

Every `TICK_SECONDS` the thread rotates the open landing file when it is due, reads
`published/ingest.json` again when it changed (the backlog is what the writer wrote after
the last file the ingest recorded), and loads the catalog again when one of its files
changed (keys added or revoked, new limits). Requests only read what the thread set.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from orchestration.catalog import CatalogError, load_catalog_cached
from orchestration.catalog.loader import catalog_files
from orchestration.ingest.refresh_status import ingest_status_path, read_json
from orchestration.serve.api_keys import KeyRing
from orchestration.serve.landing_writer import LandingWriter

log = logging.getLogger(__name__)

TICK_SECONDS = 0.25


class Intake:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.catalog_dir = home / "catalog"
        self.ring = KeyRing.of(None)
        self.ingested_through: str | None = None
        self.last_ingest: dict | None = None
        settings = self.ring.settings
        self.writer = LandingWriter(
            home / "landing" / "events", float(settings.rotate_seconds), settings.rotate_events
        )
        self._catalog_seen: tuple | None = None
        self._ingest_seen: tuple | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Intake:
        self._reload_catalog()
        self._reload_ingest_status()
        for name in self.writer.recover(self.ingested_through):
            log.warning("a landing file left open by a stopped server was completed: %s", name)
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="meterbook-intake", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.writer.close()  # what was acknowledged becomes a landing file now

    def backlog_bytes(self) -> int:
        return self.writer.backlog_bytes(self.ingested_through)

    def _run(self) -> None:
        while not self._stopping.wait(TICK_SECONDS):
            try:
                self.writer.rotate_if_due()
                self._reload_ingest_status()
                self._reload_catalog()
            except Exception:  # the thread must outlive whatever one tick meets
                log.exception("the events API's background tick failed")

    def _reload_ingest_status(self) -> None:
        seen = _identity([ingest_status_path(self.home)])
        if seen == self._ingest_seen:
            return
        self._ingest_seen = seen
        status = read_json(ingest_status_path(self.home))
        if status is not None:
            self.last_ingest = status
            self.ingested_through = status.get("api_ingested_through")

    def _reload_catalog(self) -> None:
        files = catalog_files(self.catalog_dir) if self.catalog_dir.is_dir() else []
        seen = _identity(files)
        if seen == self._catalog_seen:
            return
        self._catalog_seen = seen
        try:
            catalog = load_catalog_cached(self.catalog_dir) if files else None
        except CatalogError as exc:
            log.warning("the catalog does not load; keeping the API keys as they were: %s", exc)
            return
        self.ring = KeyRing.of(catalog)
        self.writer.rotate_seconds = float(self.ring.settings.rotate_seconds)
        self.writer.rotate_events = self.ring.settings.rotate_events


def _identity(paths: list[Path]) -> tuple:
    found = []
    for path in paths:
        try:
            stat = os.stat(path)
        except OSError:
            continue
        found.append((path.name, stat.st_size, stat.st_mtime_ns, stat.st_ino))
    return tuple(found)
