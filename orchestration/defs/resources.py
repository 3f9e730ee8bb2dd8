"""Resources configured from the workspace (METERBOOK_HOME) and the environment."""

from __future__ import annotations

import importlib.metadata
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path

import duckdb
from dagster import ConfigurableResource
from dagster_dbt import DbtCliResource
from packaging import version

from orchestration.catalog import Catalog, load_catalog_cached
from orchestration.defs.stripe.resource import StripeResource
from orchestration.locking import LOCK_WAIT_SECONDS, WRITE_LOCK, workspace_lock
from orchestration.sql import connect_when_free
from orchestration.workspace import DBT_PROJECT_DIR, Workspace

# One writer at a time: a second close waits this long, then fails with a clear message.


class MeterbookWorkspace(ConfigurableResource):
    """The workspace folder: catalog, landing files, warehouse, documents."""

    home: str

    @property
    def workspace(self) -> Workspace:
        return Workspace(Path(self.home))

    def catalog(self) -> Catalog:
        return load_catalog_cached(self.workspace.catalog_dir)

    @contextmanager
    def exclusive(self, wait_seconds: float = LOCK_WAIT_SECONDS) -> Iterator[Path]:
        """The warehouse file, to ourselves: the workspace lock, then no other process has the
        file open (DuckDB admits one process per file, even for reading). For dbt steps, which
        open the file in their own process; yields its path."""
        ws = self.workspace.ensure()
        with workspace_lock(ws.home, WRITE_LOCK, wait_seconds):
            connect_when_free(ws.warehouse_path, wait_seconds).close()
            yield ws.warehouse_path

    @contextmanager
    def warehouse(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection to the warehouse, held under the workspace's one write lock."""
        with self._connection(self.workspace.ensure(), LOCK_WAIT_SECONDS) as con:
            yield con

    @contextmanager
    def reader(
        self, wait_seconds: float = LOCK_WAIT_SECONDS
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection for reports and checks. It queues on the same lock as writers: DuckDB
        lets only one process open the file, and a check runs beside other steps when the UI
        launches a run (multiprocess executor). Unlike `warehouse`, it does not create the
        workspace's folders."""
        with self._connection(self.workspace, wait_seconds) as con:
            yield con

    @staticmethod
    @contextmanager
    def _connection(ws: Workspace, wait_seconds: float) -> Iterator[duckdb.DuckDBPyConnection]:
        with workspace_lock(ws.home, WRITE_LOCK, wait_seconds):
            con = connect_when_free(ws.warehouse_path, wait_seconds)
            try:
                yield con
            finally:
                con.close()


def default_workspace() -> Workspace:
    ws = Workspace.from_env()
    # dbt runs in a subprocess and finds the warehouse through this variable (profiles.yml)
    os.environ["METERBOOK_WAREHOUSE"] = str(ws.warehouse_path)
    return ws


class MeterbookDbt(DbtCliResource):
    """dbt for meterbook: no in-process dbt adapter before each command, and no `dbt --version`.

    dagster-dbt opens a dbt adapter in the orchestrating process only to fetch column metadata,
    which we do not use; it costs several seconds per command, twice per close. It also runs
    `dbt --version` once per process to learn which dbt it drives (2.5 s: dbt's start-up); the
    dbt it drives is the one installed beside this Python, whose version the package says.
    """

    def _initialize_dbt_core_adapter(self, args):  # noqa: ARG002 (signature of the parent)
        return None

    @cached_property
    def _cli_version(self) -> version.Version:
        return version.parse(importlib.metadata.version("dbt-core"))


def build_resources(ws: Workspace) -> dict:
    return {
        "meterbook": MeterbookWorkspace(home=str(ws.home)),
        "stripe": StripeResource(),
        "dbt": MeterbookDbt(
            project_dir=str(DBT_PROJECT_DIR),
            profiles_dir=str(DBT_PROJECT_DIR),
            # the dbt installed beside this Python, whether or not the venv is on PATH
            dbt_executable=str(Path(sys.executable).parent / "dbt"),
        ),
    }
