"""How far the pipeline has caught up with what arrived (SPEC 9 `GET /v1/status`), published
beside the snapshot so that `meterbook serve` never opens the warehouse:

- `published/ingest.json`, by every ingest: the last file of `landing/events/api/` on record
  (the events API counts what it wrote after it as its backlog) and, for this run, when the
  oldest event of the files it read arrived (an API file's name says when its first event
  was accepted; any other file's mtime says when it was last written);
- `published/status.json`, by every snapshot publish after an ingest of the same run: that
  arrival to the publish, the lag of the refresh.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestration.billing.entitlements.publish import published_dir, write_atomically
from orchestration.ingest.discovery import API_FOLDER, api_file_opened

API_PREFIX = f"{API_FOLDER}/"


def ingest_status_path(home: Path) -> Path:
    return published_dir(home) / "ingest.json"


def refresh_status_path(home: Path) -> Path:
    return published_dir(home) / "status.json"


def arrival_of(landing_dir: Path, rel: str) -> datetime | None:
    """When the oldest event of a landing file arrived: an API file's name carries the time
    its first event was accepted (`api/<day>/<opened>-<pid>-<seq>.ndjson`); for any other
    file its mtime, the last write (a file dropped whole arrived then)."""
    opened = api_file_opened(rel.rsplit("/", 1)[-1]) if rel.startswith(API_PREFIX) else None
    if opened is not None:
        return opened
    try:
        return datetime.fromtimestamp(os.stat(landing_dir / rel).st_mtime, UTC)
    except OSError:
        return None


def record_ingest(
    home: Path,
    landing_dir: Path,
    run_id: str,
    paths: Iterable[str],
    lines: int,
    copies: Iterable[str] = (),
) -> dict[str, Any]:
    """Writes `ingest.json` for a run that read `paths` and recorded `copies` (files whose
    bytes were ingested before: done with too), both relative to the landing folder."""
    paths = list(paths)
    previous = read_json(ingest_status_path(home)) or {}
    recorded = [*paths, *copies]
    api = [p[len(API_PREFIX) :] for p in recorded if p.startswith(API_PREFIX)]
    through = max([*api, *filter(None, [previous.get("api_ingested_through")])], default=None)
    arrivals = [a for a in (arrival_of(landing_dir, p) for p in paths) if a is not None]
    status = {
        "run_id": run_id,
        "ingested_at": iso_z(datetime.now(UTC)),
        "files": len(paths),
        "lines_read": lines,
        "oldest_arrival": iso_z(min(arrivals)) if arrivals else None,
        "api_ingested_through": through,
    }
    write_atomically(ingest_status_path(home), status)
    return status


def record_refresh(home: Path, run_id: str, as_of: str | None) -> dict[str, Any] | None:
    """After a publish: `status.json` with the lag from the oldest event this run ingested to
    now (the wall clock: lag is real time, whatever METERBOOK_NOW says). None, and nothing
    written, when this run ingested nothing (a close with no new file leaves the last lag)."""
    ingest = read_json(ingest_status_path(home)) or {}
    if ingest.get("run_id") != run_id or ingest.get("oldest_arrival") is None:
        return None
    published = datetime.now(UTC)
    oldest = datetime.fromisoformat(ingest["oldest_arrival"].replace("Z", "+00:00"))
    status = {
        "run_id": run_id,
        "usage_watermark": as_of,
        "published_at": iso_z(published),
        "oldest_arrival": ingest["oldest_arrival"],
        "lag_seconds": f"{max(0.0, (published - oldest).total_seconds()):.3f}",
        "files": ingest["files"],
        "lines_read": ingest["lines_read"],
    }
    write_atomically(refresh_status_path(home), status)
    return status


def iso_z(moment: datetime) -> str:
    """To the millisecond: a lag of a few seconds is measured, not rounded to whole ones."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) else None
