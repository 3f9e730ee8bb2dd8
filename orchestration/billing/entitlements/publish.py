"""The published snapshot: one JSON file under `$METERBOOK_HOME/published/`, replaced whole.

Readers (`meterbook serve`, `meterbook entitlements`) never open the warehouse, so they never
wait on its lock while a close runs. The file is written under a temporary name, fsynced and
renamed over the old one (then the folder is fsynced, so the rename itself survives a crash):
a reader opens either the old file or the new one, never half of either.

The document (format 1):
    {"format": 1, "as_of": "<usage watermark, ISO 8601 Z, or null>",
     "published_at": "<ISO 8601 Z>",
     "features": {code: {"code", "name", "type", "meter"}},
     "customers": {customer_id: {
         "customer_id", "name", "currency",
         "entitlements": {feature_code: <SPEC 9 one-feature answer>},
         "usage": <the month so far: SPEC 9 GET /v1/customers/{id}/usage>}}}
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

SNAPSHOT_NAME = "snapshot.json"
FORMAT = 1


def published_dir(home: Path) -> Path:
    return home / "published"


def snapshot_path(home: Path) -> Path:
    return published_dir(home) / SNAPSHOT_NAME


def write_atomically(path: Path, document: Any) -> Path:
    """Write `document` as JSON to `path` so that a reader sees the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # readable like any document (mkstemp makes it private)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(document, handle, sort_keys=True, separators=(",", ":"))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
    return path


def read_snapshot(home: Path) -> dict[str, Any] | None:
    """The published snapshot, or None before the first one."""
    try:
        text = snapshot_path(home).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    return json.loads(text)
