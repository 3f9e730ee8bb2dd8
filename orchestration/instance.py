"""The workspace's Dagster instance: its `dagster.yaml`, written from the catalog's settings.

Without `settings.dagster_storage` the instance keeps its runs in SQLite files under the
workspace's dagster/ folder: enough for one person and one machine. With it, runs, the event
log and schedules go to PostgreSQL, so the webserver, the daemon and several people's commands
share one history. A `dagster.yaml` someone wrote by hand (it lacks the first line below) is
theirs: it is never overwritten, whatever the catalog says.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from orchestration.catalog.loader import CatalogError, load_catalog_cached
from orchestration.catalog.models import DagsterStorage

MARKER = "# written by meterbook from the catalog's settings.dagster_storage: edit the catalog"
# what meterbook wrote before the file carried the marker: still meterbook's to replace
_UNMARKED_DEFAULT = "telemetry:\n  enabled: false\n"


def dagster_yaml_text(storage: DagsterStorage | None) -> str:
    """The instance configuration: telemetry off (this machine may reach no network beyond the
    package registries) and, when asked, PostgreSQL for every storage."""
    config: dict = {"telemetry": {"enabled": False}}
    if storage is not None:
        pg = storage.postgres
        database = {"username": pg.username, "hostname": pg.host, "db_name": pg.database}
        database["port"] = pg.port
        if pg.password_env:
            database["password"] = {"env": pg.password_env}  # read by Dagster, never written
        config["storage"] = {"postgres": {"postgres_db": database}}
    return f"{MARKER}\n" + yaml.safe_dump(config, sort_keys=False)


def write_dagster_yaml(dagster_home: Path, catalog_dir: Path) -> Path:
    """Write dagster.yaml from the catalog unless it is already so or someone else wrote it.
    A catalog with mistakes changes nothing here: the command that reads it will say what
    they are, and the instance keeps the storage it had."""
    path = dagster_home / "dagster.yaml"
    current = path.read_text(encoding="utf-8") if path.exists() else None
    if current is not None and not _ours(current):
        return path
    try:
        storage = load_catalog_cached(catalog_dir).settings.dagster_storage
    except CatalogError:
        if current is not None:
            return path
        storage = None
    wanted = dagster_yaml_text(storage)
    if current != wanted:  # whole or not at all: another command may be reading it
        partial = path.with_name(f".dagster.yaml.{os.getpid()}")
        partial.write_text(wanted, encoding="utf-8")
        partial.replace(path)
    return path


def _ours(text: str) -> bool:
    return text.startswith(MARKER) or text == _UNMARKED_DEFAULT
