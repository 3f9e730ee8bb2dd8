"""Which landing files exist, what format they are, and what content they hold (sha256).

Only the file types of SPEC 2.1 are landing files. Anything else (`.tmp`, `.crc`, `_SUCCESS`
markers, editor backups) and every path with a component starting with `.` is ignored and
logged, never recorded: recording it would tie its content hash to "no events", and the same
bytes renamed to `.jsonl` afterwards would then be taken for an already ingested copy.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

FORMATS = ("jsonl", "ndjson", "json", "csv", "parquet")
_HASH_CHUNK = 8 << 20


@dataclass(frozen=True)
class LandingFile:
    path: Path  # absolute
    rel: str  # relative to landing/events, posix: the name everything else uses
    format: str  # one of FORMATS
    gzipped: bool
    size_bytes: int
    mtime_ns: int

    @property
    def format_label(self) -> str:
        return self.format + (".gz" if self.gzipped else "")


def detect_format(name: str) -> tuple[str, bool] | None:
    """(format, gzipped) from a file name, case-insensitively; None for other files."""
    lower = name.lower()
    gzipped = lower.endswith(".gz")
    if gzipped:
        lower = lower[:-3]
    ext = lower.rpartition(".")[2] if "." in lower else ""
    return (ext, gzipped) if ext in FORMATS else None


def list_landing_files(landing_dir: Path) -> list[LandingFile]:
    """Every landing file under `landing_dir`, any depth, sorted by relative posix path."""
    if not landing_dir.is_dir():
        return []
    found = [f for f in _walk(landing_dir, landing_dir) if f is not None]
    return sorted(found, key=lambda f: f.rel)


def _walk(root: Path, folder: Path) -> Iterator[LandingFile | None]:
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith("."):
                log.info("ignoring hidden landing path %s", Path(entry.path).relative_to(root))
                continue
            if entry.is_dir(follow_symlinks=True):
                yield from _walk(root, Path(entry.path))
            elif entry.is_file(follow_symlinks=True):
                yield _landing_file(root, entry)


def _landing_file(root: Path, entry: os.DirEntry) -> LandingFile | None:
    rel = Path(entry.path).relative_to(root).as_posix()
    detected = detect_format(entry.name)
    if detected is None:
        log.warning("ignoring landing file %s: not one of %s (optionally .gz)", rel, FORMATS)
        return None
    stat = entry.stat(follow_symlinks=True)
    return LandingFile(
        path=Path(entry.path),
        rel=rel,
        format=detected[0],
        gzipped=detected[1],
        size_bytes=stat.st_size,
        mtime_ns=stat.st_mtime_ns,
    )


class HashStopped(Exception):
    """The hash was given up before the end of the file (`stop` was set)."""


def sha256_file(path: Path, stop: threading.Event | None = None) -> str:
    """The file's sha256; raises HashStopped as soon as `stop` is set (a failed ingest does
    not wait for the rest of a 10 GiB file to be hashed)."""
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as fh:
        while chunk := fh.read(_HASH_CHUNK):
            if stop is not None and stop.is_set():
                raise HashStopped(str(path))
            digest.update(chunk)
    return digest.hexdigest()
