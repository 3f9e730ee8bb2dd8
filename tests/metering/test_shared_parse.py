"""A warehouse without a dbt parse of its own starts from the one its checkout shares, with
the profile hash dbt computes for it, and only when the profiles differ in the path alone:
otherwise dbt parses everything, as it would have."""

from __future__ import annotations

import json

import msgpack
import pytest

from orchestration.defs.dbt import runner
from orchestration.defs.dbt.runner import PARTIAL_PARSE, dbt_args, run_dbt
from orchestration.defs.dbt.shared_parse import adopt_shared_parse, profile_env

FULL_PARSE = "Unable to do partial parsing"


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """The shared parse of one warehouse's first invocation (a full parse)."""
    base = tmp_path_factory.mktemp("shared-parse")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runner, "SHARED_PARSE_UNDER", base / "shared")
        target = base / "first-target"
        run_dbt(base / "first" / "warehouse.duckdb", dbt_args("parse"), target_path=target)
        assert FULL_PARSE in (target / "dbt.log").read_text()
        yield base / "shared"


def _env(warehouse) -> dict:
    """The environment run_dbt renders the profile from, for `warehouse`."""
    return {**profile_env(), "METERBOOK_WAREHOUSE": str(warehouse)}


def test_a_new_warehouse_parses_nothing_again(shared, tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "SHARED_PARSE_UNDER", shared)
    target = tmp_path / "target"
    run_dbt(tmp_path / "new" / "warehouse.duckdb", dbt_args("parse"), target_path=target)
    assert FULL_PARSE not in (target / "dbt.log").read_text()
    nodes = json.loads((target / "manifest.json").read_text())["nodes"]
    assert nodes and {node["database"] for node in nodes.values()} == {"warehouse"}


@pytest.mark.parametrize(
    "differs",
    [
        {"METERBOOK_MEMORY_LIMIT": "1234MB"},  # a setting
        {"METERBOOK_WAREHOUSE": "/elsewhere/ledger.duckdb"},  # the database's name with it
    ],
    ids=["setting", "database name"],
)
def test_more_than_the_path_differing_gives_no_parse(shared, tmp_path, differs):
    env = {**_env(tmp_path / "warehouse.duckdb"), **differs}
    assert not adopt_shared_parse(tmp_path / "target", env, shared)
    assert not (tmp_path / "target" / PARTIAL_PARSE).exists()


def test_a_parse_and_environment_that_do_not_belong_together_give_nothing(shared, tmp_path):
    # another process replaced one of the two files and not yet the other: the stored hash
    # is then not the one the environment gives, and nothing is rewritten on a guess
    kept = shared / "shared_parse" / PARTIAL_PARSE
    torn = tmp_path / "torn" / "shared_parse"
    torn.mkdir(parents=True)
    (torn / PARTIAL_PARSE).write_bytes(kept.read_bytes())
    (torn / "profile_env.json").write_text(json.dumps(_env("/other/warehouse.duckdb")))
    env = _env(tmp_path / "warehouse.duckdb")
    assert not adopt_shared_parse(tmp_path / "target", env, torn.parent)
    assert adopt_shared_parse(tmp_path / "target", env, shared)
    given = msgpack.unpackb((tmp_path / "target" / PARTIAL_PARSE).read_bytes())
    stored = msgpack.unpackb(kept.read_bytes())
    assert given["state_check"]["profile_hash"] != stored["state_check"]["profile_hash"]
    assert given["nodes"] == stored["nodes"]
