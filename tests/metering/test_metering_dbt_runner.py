"""The dbt argument list is a pure function of the command, selection and partition vars;
an in-process dbt run keeps its artifacts out of the project's shared target/ folder, and a
parse replaces the manifest there whole."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from orchestration.defs.transform import assets
from orchestration.defs.transform.assets import MANIFEST, ensure_manifest
from orchestration.defs.transform.dbt_runner import DbtRunError, dbt_args, run_dbt


def test_build_without_partition_keeps_project_defaults():
    assert dbt_args("build", None, {}) == ["build"]


def test_select_and_vars():
    args = dbt_args("build", "tag:usage", {"min_date": "2026-10-02", "max_date": "2026-10-03"})
    assert args[:3] == ["build", "--select", "tag:usage"]
    assert args[3] == "--vars"
    assert json.loads(args[4]) == {"min_date": "2026-10-02", "max_date": "2026-10-03"}


def test_vars_are_rendered_deterministically():
    a = dbt_args("run", None, {"max_date": "2026-10-03", "min_date": "2026-10-02"})
    b = dbt_args("run", None, {"min_date": "2026-10-02", "max_date": "2026-10-03"})
    assert a == b


def test_close_month():
    assert dbt_args("run", "x", {"close_month": "2026-10"})[-1] == '{"close_month": "2026-10"}'
    assert dbt_args("run", None, {"close_month": None}) == [
        "run",
        "--vars",
        '{"close_month": null}',
    ]


@pytest.mark.parametrize(
    "vars",
    [
        {"min_date": "2026-10-2"},
        {"min_date": "2026-10-02'; drop table x; --"},
        {"close_month": "2026-13"},
        {"close_month": "2026-10-01"},
        {"close_month": 202610},
        {"min_date": "2026-10-03", "max_date": "2026-10-03"},  # [min, max) would be empty
        {"month": "2026-10"},
    ],
)
def test_bad_vars_are_refused(vars):
    with pytest.raises(ValueError):
        dbt_args("build", None, vars)


def test_unknown_command_is_refused():
    with pytest.raises(ValueError, match="unknown dbt command"):
        dbt_args("drop", None, {})


def _manifest_file() -> tuple[int, int, int]:
    """Which file target/manifest.json is, and when and how it was last written."""
    stat = MANIFEST.stat()
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


def _run_folders() -> list[str]:
    return [p.name for p in MANIFEST.parent.iterdir() if p.name.startswith("run_dbt-")]


def test_a_run_leaves_the_manifest_that_dagster_reads_alone(tmp_path):
    # every process loading the definitions reads target/manifest.json; dbt rewrites its
    # artifacts in place, so a run writing there could hand a starting step half a manifest
    ensure_manifest()
    before = _manifest_file()
    run_dbt(tmp_path / "warehouse.duckdb", dbt_args("parse", None, {}))
    assert _manifest_file() == before
    assert _run_folders() == []  # its own folder is removed after a success


def test_a_failed_run_keeps_its_logs_and_says_where(tmp_path):
    ensure_manifest()
    with pytest.raises(DbtRunError, match="its logs: ") as failure:
        # no raw schema in an empty warehouse: the staging view cannot be created
        run_dbt(tmp_path / "warehouse.duckdb", dbt_args("run", "stg_meterbook__raw_events", {}))
    logs = Path(re.search(r"its logs: ([^)]+)\)", str(failure.value)).group(1))
    try:
        assert logs.parent == MANIFEST.parent and (logs / "dbt.log").exists()
    finally:
        shutil.rmtree(logs, ignore_errors=True)


def test_a_stale_manifest_is_replaced_whole_not_rewritten_in_place(tmp_path, monkeypatch):
    # processes read the manifest without the parse lock: a rename gives each either the old
    # file or the new one, never one half written. (A target/ of the test's own, so that the
    # project's stays as other tests and workers read it.)
    manifest = tmp_path / "target" / "manifest.json"
    monkeypatch.setattr(assets, "MANIFEST", manifest)
    parse = assets.ensure_manifest.__wrapped__  # past the per-process cache
    assert parse() == manifest and json.loads(manifest.read_text())["nodes"]
    with open(manifest) as held:  # a reader that opened the old manifest
        first = os.fstat(held.fileno()).st_ino
        os.utime(manifest, (0, 0))  # older than every project file: the next load parses
        parse()
        assert json.loads(held.read())["nodes"]  # the old file, whole
    assert manifest.stat().st_ino != first and manifest.stat().st_mtime > 0
    assert sorted(p.name for p in manifest.parent.iterdir() if not p.name.startswith(".")) == [
        "manifest.json",
        "partial_parse.msgpack",
    ]  # no scratch folder left behind


def _project(root: Path) -> Path:
    (root / "models").mkdir(parents=True)
    (root / "models" / "m.sql").write_text("select 1")
    os.utime(root / "models" / "m.sql", (100, 100))
    (root / "target" / "asset-run1").mkdir(parents=True)
    (root / "target" / "asset-run1" / "x.yml").write_text("")
    (root / ".user.yml").write_text("id: x")
    return root


def test_the_freshness_walk_never_enters_what_other_processes_delete(tmp_path, monkeypatch):
    # while one step's process starts and loads the definitions, another's dbt build removes
    # its target/<asset>-<run> folder: a walk that entered target/ then failed on a folder
    # that had just gone, and the step ended without success or failure (a CI failure)
    project = _project(tmp_path / "proj")
    real_scandir, entered = os.scandir, []

    def scandir(path="."):
        if "target" in Path(os.fspath(path)).parts:
            # os.walk skips a folder it cannot list, so record the attempt as well: a walk
            # that enters target/ would still stat its files as another process deletes them
            entered.append(os.fspath(path))
            raise FileNotFoundError(2, "removed by another process", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    monkeypatch.setattr(assets, "DBT_PROJECT_DIR", project)
    monkeypatch.setattr(assets, "MANIFEST", project / "target" / "manifest.json")
    assets.MANIFEST.write_text("{}")
    os.utime(assets.MANIFEST, (150, 150))
    assert assets._manifest_is_current()  # dbt's output and hidden files left out
    os.utime(project / "models" / "m.sql", (200, 200))
    assert not assets._manifest_is_current()
    assert entered == []
