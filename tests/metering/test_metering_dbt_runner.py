"""The dbt argument list and the partition's environment are pure functions; an in-process
dbt run keeps its artifacts out of the project's shared target/ folder and its partial parse
beside the warehouse, and a parse replaces the manifest there whole."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from orchestration.defs.dbt import manifest as assets
from orchestration.defs.dbt import runner
from orchestration.defs.dbt.project import MANIFEST, ensure_manifest
from orchestration.defs.dbt.runner import (
    PARTIAL_PARSE,
    DbtRunError,
    dbt_args,
    environment,
    keep_partial_parse,
    partial_parse_cache,
    partition_env,
    run_dbt,
    scratch_target,
    seed_partial_parse,
)


def test_command_and_selection():
    assert dbt_args("build") == ["build"]
    assert dbt_args("build", "tag:usage") == ["build", "--select", "tag:usage"]


def test_no_partition_sets_every_variable_to_everything():
    assert (
        partition_env(None)
        == partition_env({})
        == {
            "METERBOOK_MIN_DATE": "1970-01-01",
            "METERBOOK_MAX_DATE": "9999-12-31",
            "METERBOOK_CLOSE_MONTH": "",
            "METERBOOK_MAX_READ_SEQ": "",
        }
    )


def test_a_partition_sets_its_own_variables_and_keeps_the_others_default():
    env = partition_env({"min_date": "2026-10-02", "max_date": "2026-10-03"})
    assert env["METERBOOK_MIN_DATE"] == "2026-10-02"
    assert env["METERBOOK_MAX_DATE"] == "2026-10-03"
    assert env["METERBOOK_CLOSE_MONTH"] == ""
    assert partition_env({"close_month": "2026-10"})["METERBOOK_CLOSE_MONTH"] == "2026-10"
    assert partition_env({"close_month": None})["METERBOOK_CLOSE_MONTH"] == ""
    assert partition_env({"max_read_seq": "74463"})["METERBOOK_MAX_READ_SEQ"] == "74463"


@pytest.mark.parametrize(
    "partition",
    [
        {"min_date": "2026-10-2"},
        {"min_date": "2026-10-02'; drop table x; --"},
        {"close_month": "2026-13"},
        {"close_month": "2026-10-01"},
        {"close_month": 202610},
        {"max_read_seq": "12 or true"},
        {"max_read_seq": "-1"},
        {"min_date": "2026-10-03", "max_date": "2026-10-03"},  # [min, max) would be empty
        {"month": "2026-10"},
    ],
)
def test_bad_partitions_are_refused(partition):
    with pytest.raises(ValueError):
        partition_env(partition)


def test_unknown_command_is_refused():
    with pytest.raises(ValueError, match="unknown dbt command"):
        dbt_args("drop")


def test_the_environment_is_restored(monkeypatch):
    monkeypatch.setenv("METERBOOK_MIN_DATE", "kept")
    monkeypatch.delenv("METERBOOK_CLOSE_MONTH", raising=False)
    with environment({"METERBOOK_MIN_DATE": "2026-10-02", "METERBOOK_CLOSE_MONTH": "2026-10"}):
        assert os.environ["METERBOOK_MIN_DATE"] == "2026-10-02"
        assert os.environ["METERBOOK_CLOSE_MONTH"] == "2026-10"
    assert os.environ["METERBOOK_MIN_DATE"] == "kept"
    assert "METERBOOK_CLOSE_MONTH" not in os.environ


def test_the_warehouses_own_parse_replaces_the_one_an_invocation_was_given(tmp_path):
    cache, target = tmp_path / "dbt" / PARTIAL_PARSE, tmp_path / "target"
    seed_partial_parse(cache, target)  # nothing kept yet: nothing to give
    assert not target.exists()
    target.mkdir()
    (target / PARTIAL_PARSE).write_bytes(b"another workspace's parse")
    keep_partial_parse(target, cache)
    assert cache.read_bytes() == b"another workspace's parse"
    cache.write_bytes(b"this warehouse's parse")
    seed_partial_parse(cache, target)
    assert (target / PARTIAL_PARSE).read_bytes() == b"this warehouse's parse"
    assert sorted(p.name for p in cache.parent.iterdir()) == [PARTIAL_PARSE]  # no scratch left


def _parse_log(target: Path) -> str:
    return (target / "dbt.log").read_text()


def test_a_new_partition_does_not_make_dbt_parse_the_project_again(tmp_path):
    # with the partition in --vars, every new day or month re-parsed the whole project (and so
    # did another workspace's parse): 3-4 s of every build
    warehouse = tmp_path / "warehouse.duckdb"
    first, second = tmp_path / "first", tmp_path / "second"
    run_dbt(warehouse, dbt_args("parse"), {"close_month": "2026-10"}, target_path=first)
    assert partial_parse_cache(warehouse).exists()
    run_dbt(warehouse, dbt_args("parse"), {"close_month": "2026-11"}, target_path=second)
    assert "Unable to do partial parsing" not in _parse_log(second)
    # another warehouse's parse: tests/metering/test_shared_parse.py


def _manifest_file() -> tuple[int, int, int]:
    """Which file target/manifest.json is, and when and how it was last written."""
    stat = MANIFEST.stat()
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


def test_a_run_leaves_the_manifest_that_dagster_reads_alone(tmp_path, monkeypatch):
    # every process loading the definitions reads target/manifest.json; dbt rewrites its
    # artifacts in place, so a run writing there could hand a starting step half a manifest
    ensure_manifest()
    before = _manifest_file()
    # the run's own folder (others under target/ may be another test's, or a failed run's kept
    # for its logs)
    used = []

    def recorded(*args):
        used.append(scratch_target(*args))
        return used[-1]

    monkeypatch.setattr(runner, "scratch_target", recorded)
    run_dbt(tmp_path / "warehouse.duckdb", dbt_args("parse"))
    assert _manifest_file() == before
    assert len(used) == 1 and used[0].parent == MANIFEST.parent
    assert not used[0].exists()  # removed after a success


def test_dbt_sends_no_usage_events():
    # dbt's own record of the flag it ran with (dbt_project.yml: flags)
    metadata = json.loads(ensure_manifest().read_text())["metadata"]
    assert metadata["send_anonymous_usage_stats"] is False


def test_a_failed_run_keeps_its_logs_and_says_where(tmp_path):
    ensure_manifest()
    with pytest.raises(DbtRunError, match="its logs: ") as failure:
        # no raw schema in an empty warehouse: the staging view cannot be created
        run_dbt(tmp_path / "warehouse.duckdb", dbt_args("run", "stg_meterbook__raw_events"))
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
