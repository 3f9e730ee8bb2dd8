"""The dbt manifest: parsed when missing or older than any project file. Free of Dagster, so
that the CLI's reports (invoices, wallets, events) name models without loading it (2 s)."""

from __future__ import annotations

import fcntl
import functools
import os
import shutil
from pathlib import Path

from orchestration.defs.dbt.runner import PROJECT_TARGET, project_args, scratch_target
from orchestration.workspace import DBT_PROJECT_DIR

MANIFEST = PROJECT_TARGET / "manifest.json"
# what dbt parses: models (SQL and Python), YAML, seeds
_PROJECT_FILES = (".sql", ".py", ".yml", ".yaml", ".csv")


@functools.cache
def ensure_manifest() -> Path:
    """Parse the dbt project when the manifest is missing or older than any project file."""
    if _manifest_is_current():
        return MANIFEST
    MANIFEST.parent.mkdir(parents=True, exist_ok=True)  # for the lock file
    with open(MANIFEST.parent / ".parse.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two processes must not write the manifest at once
        if not _manifest_is_current():  # the process we waited for may have parsed it
            _parse_into_target()
    return MANIFEST


def _manifest_is_current() -> bool:
    return MANIFEST.exists() and MANIFEST.stat().st_mtime >= _newest_source_mtime(DBT_PROJECT_DIR)


# dbt's own output: other processes create and delete folders in these while this one starts
# (each dbt invocation's target/<asset>-<run>, a parse's scratch), so a walk must not enter
# them: a folder deleted mid-walk made a step's process fail as it loaded the definitions.
# Hidden files are dbt's too (.user.yml).
_NOT_SOURCES = {"target", "logs", "dbt_packages"}


def _newest_source_mtime(project: Path) -> float:
    """The newest modification time of the project's files, outside dbt's output."""
    newest = 0.0
    for folder, subfolders, files in os.walk(project):
        subfolders[:] = [d for d in subfolders if d not in _NOT_SOURCES and not d.startswith(".")]
        for name in files:
            if name.endswith(_PROJECT_FILES) and not name.startswith("."):
                newest = max(newest, os.stat(os.path.join(folder, name)).st_mtime)
    return newest


def _parse_into_target() -> None:
    """`dbt parse` into a scratch folder, then the artifacts renamed into target/: other
    processes read target/manifest.json without the lock, and a rename is all or nothing."""
    from dbt.cli.main import dbtRunner  # noqa: PLC0415 (slow import, only when parsing)

    scratch = scratch_target("parse-", under=MANIFEST.parent)
    try:
        result = dbtRunner().invoke(["parse", "--quiet", *project_args(scratch)])
        if not result.success:
            raise RuntimeError(f"dbt parse failed: {result.exception}")
        for artifact in ("partial_parse.msgpack", MANIFEST.name):  # the manifest last
            if (scratch / artifact).exists():
                os.replace(scratch / artifact, MANIFEST.parent / artifact)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
