"""Which landing files exist, what format they are, and what content they hold (sha256).

Only the file types of SPEC 2.1 are landing files. Anything else (`.tmp`, `.crc`, `_SUCCESS`
markers, editor backups) and every path with a component starting with `.` is ignored and
logged, never recorded: recording it would tie its content hash to "no events", and the same
bytes renamed to `.jsonl` afterwards would then be taken for an already ingested copy.
Symlinks are followed only when they lead inside the landing folder, and loops are reported,
never followed (`_Walk`).
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

log = logging.getLogger(__name__)

FORMATS = ("jsonl", "ndjson", "json", "csv", "parquet")
# where `meterbook serve` writes the events POSTed to it (serve/landing_writer.py); its files
# appear whole (written under a hidden name, then renamed)
API_FOLDER = "api"
# an API file is named `<opened>-<pid>-<seq>.ndjson`, <opened> when its first event was accepted
API_STAMP = "%Y%m%dT%H%M%S%fZ"
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


def api_file_opened(name: str) -> datetime | None:
    """When the events API opened a file, read from its name; None for any other name."""
    try:
        return datetime.strptime(name.split("-", 1)[0], API_STAMP).replace(tzinfo=UTC)
    except ValueError:
        return None


def list_landing_files(landing_dir: Path) -> list[LandingFile]:
    """Every landing file under `landing_dir`, any depth, sorted by relative posix path."""
    if not landing_dir.is_dir():
        return []
    walk = _Walk(landing_dir)
    found = [f for f in walk.folder(landing_dir, frozenset()) if f is not None]
    return sorted(found, key=lambda f: f.rel)


class _Walk:
    """Symlinks are followed only to what lies inside the landing folder: one pointing
    elsewhere (`host.json -> /etc/hostname`) would store any file of the machine, and a loop
    (`back -> ..`) would fail every ingest. Inside, a link to a file or a folder is just another
    name for the same bytes, which the ingest records as a copy."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.real_root = os.path.realpath(root)

    def folder(self, folder: Path, above: frozenset) -> Iterator[LandingFile | None]:
        """The files under `folder`; `above` holds the (device, inode) of the folders on the
        way here, the root's included, so that a folder reached again is a loop."""
        try:
            stat = os.stat(folder)
            with os.scandir(folder) as scan:
                entries = list(scan)
        except OSError as exc:  # gone since it was listed: its files are seen next run
            log.warning("cannot list landing folder %s: %s", self._rel(folder), exc.strerror)
            return
        here = above | {(stat.st_dev, stat.st_ino)}
        for entry in entries:
            if entry.name.startswith("."):
                log.info("ignoring hidden landing path %s", self._rel(entry.path))
            elif entry.is_symlink() and not self._inside(entry):
                continue
            elif entry.is_dir(follow_symlinks=True):
                yield from self._subfolder(entry, here)
            elif entry.is_file(follow_symlinks=True):
                yield _landing_file(self.root, entry)

    def _subfolder(self, entry: os.DirEntry, above: frozenset) -> Iterator[LandingFile | None]:
        try:
            stat = entry.stat(follow_symlinks=True)
        except OSError:
            return
        if (stat.st_dev, stat.st_ino) in above:
            log.warning(
                "ignoring landing symlink %s: a loop (it leads back to a folder above it)",
                self._rel(entry.path),
            )
            return
        yield from self.folder(Path(entry.path), above)

    def _inside(self, entry: os.DirEntry) -> bool:
        """Whether the symlink leads to a file or folder inside the landing folder (warns if not)."""
        rel = self._rel(entry.path)
        try:
            os.stat(entry.path)  # follows the link: fails on a loop or a dangling link
        except OSError as exc:
            why = "a symlink loop" if exc.errno == errno.ELOOP else exc.strerror
            log.warning("ignoring landing symlink %s: %s", rel, why)
            return False
        real = os.path.realpath(entry.path)
        if os.path.commonpath([real, self.real_root]) != self.real_root:
            log.warning("ignoring landing symlink %s: it points outside landing/events", rel)
            return False
        return True

    def _rel(self, path: str | Path) -> str:
        return Path(path).relative_to(self.root).as_posix()


def _landing_file(root: Path, entry: os.DirEntry) -> LandingFile | None:
    rel = Path(entry.path).relative_to(root).as_posix()
    detected = detect_format(entry.name)
    if detected is None:
        log.warning("ignoring landing file %s: not one of %s (optionally .gz)", rel, FORMATS)
        return None
    try:
        stat = entry.stat(follow_symlinks=True)
    except OSError:  # gone since it was listed: nothing to read
        return None
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
