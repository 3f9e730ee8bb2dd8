"""The fates table built incrementally, by read order, against one build of everything.

Every ingest appends events; each build fates the new ones and re-fates the stored
occurrences of the keys they repeat. Whatever the batches, the fates must be those of one
build over all events, and a change of meters, exclusions or customers fates everything again.
"""

from __future__ import annotations

import pytest
from metering_dataset import CATALOG, EVENTS
from metering_fixtures import Warehouse, catalog_from_yaml, ev, load_events

from orchestration.billing.usage_checks import (
    check_fates_reconcile,
    check_no_key_billed_twice,
    last_build_start,
)
from orchestration.catalog.tables.metering import write_metering_tables

FATES = (
    "SELECT read_seq, billing_customer_id, event_date, fate, reason "
    "FROM intermediate.int_events_fated ORDER BY read_seq"
)

# keys of the dataset repeated by later batches: the same payload, another payload, and a
# key whose only stored occurrence was rejected (it does not claim the key)
LATE = [
    ev("late-dup", "acme", "api.request", "2026-10-20T10:00:00Z", {"region": "eu"}),
    ev("late-dup", "acme", "api.request", "2026-10-20T10:00:00Z", {"region": "eu"}),
    ev("late-conflict", "acme", "api.request", "2026-10-21T10:00:00Z", {"region": "eu"}),
    ev("late-bad", "acme", "llm.completion", "2026-10-23T10:00:00Z", {"model": "large"}),
]
REPEATS = [  # a file of their own, as an ingest reads them
    ev("late-dup", "acme", "api.request", "2026-10-20T10:00:00Z", {"region": "eu"}, path="r"),
    ev("late-conflict", "acme", "api.request", "2026-10-21T10:00:00Z", {"region": "us"}, path="r"),
    ev("late-new", "acme", "api.request", "2026-10-22T10:00:00Z", {"region": "eu"}, path="r"),
    ev(
        "late-bad",
        "acme",
        "llm.completion",
        "2026-10-23T10:00:00Z",
        {"model": "large", "input_tokens": 1, "output_tokens": 2},
        path="r",
    ),
]


def _built_at_once(tmp_path, events: list[dict], catalog: str = CATALOG) -> list[tuple]:
    wh = Warehouse(tmp_path)
    wh.setup(catalog_from_yaml(tmp_path, catalog), events)
    wh.dbt("build")
    return wh.rows(FATES)


def _built_in_batches(tmp_path, batches: list[list[dict]]) -> Warehouse:
    wh = Warehouse(tmp_path)
    wh.setup(catalog_from_yaml(tmp_path, CATALOG), batches[0])
    wh.dbt("build")
    for batch in batches[1:]:
        with wh.connect() as con:
            load_events(con, batch)
        wh.dbt("build")
    return wh


@pytest.mark.parametrize("cuts", [(5,), (1, 17, 30), tuple(range(3, len(EVENTS), 7))])
def test_batches_give_the_fates_of_one_build(tmp_path, cuts):
    events = EVENTS + LATE + REPEATS
    bounds = [0, *cuts, len(EVENTS), len(EVENTS) + len(LATE), len(events)]
    batches = [events[a:b] for a, b in zip(bounds, bounds[1:], strict=False) if b > a]
    wh = _built_in_batches(tmp_path / "batches", batches)
    assert wh.rows(FATES) == _built_at_once(tmp_path / "once", events)


def test_a_build_fates_the_new_events_and_the_keys_they_repeat(tmp_path):
    wh = _built_in_batches(tmp_path, [EVENTS + LATE])
    stored = len(EVENTS + LATE)
    with wh.connect() as con:
        load_events(con, REPEATS)
    wh.dbt("build")
    (invocation,) = wh.rows(
        "SELECT fated_in FROM intermediate.int_events_fated ORDER BY read_seq DESC LIMIT 1"
    )[0:1]
    refated = wh.rows(
        "SELECT read_seq, fated_after FROM intermediate.int_events_fated WHERE fated_in = ? "
        "ORDER BY read_seq",
        [invocation[0]],
    )
    # the four new events, and the stored occurrences of late-dup (2), late-conflict (1)
    # and late-bad (1)
    assert [seq for seq, _ in refated] == [stored - n for n in (3, 2, 1, 0)] + [
        stored + n for n in (1, 2, 3, 4)
    ]
    assert {after for _, after in refated} == {stored}
    fates = {r[0]: r[3:] for r in wh.rows(FATES)}
    assert fates[stored + 1] == ("duplicate", "same_payload")
    assert fates[stored + 2] == ("conflict", "different_payload")
    assert fates[stored + 3] == ("billable", None)
    # a rejected occurrence does not claim its key: the valid repeat read later is billable
    assert fates[stored] == ("rejected", "bad_property")
    assert fates[stored + 4] == ("billable", None)


def test_a_build_with_nothing_new_changes_nothing(tmp_path):
    wh = _built_in_batches(tmp_path, [EVENTS])
    before = wh.rows("SELECT * FROM intermediate.int_events_fated ORDER BY read_seq")
    wh.dbt("build")
    assert wh.rows("SELECT * FROM intermediate.int_events_fated ORDER BY read_seq") == before


def test_a_catalog_change_fates_every_event_again(tmp_path):
    wh = _built_in_batches(tmp_path, [EVENTS[:20], EVENTS[20:]])
    changed = CATALOG.replace(
        "reason: sandbox, property: env", "reason: sandbox_env, property: env"
    )
    assert changed != CATALOG
    with wh.connect() as con:
        write_metering_tables(con, catalog_from_yaml(tmp_path / "v2", changed))
    wh.dbt("build")
    assert wh.rows("SELECT DISTINCT fated_after FROM intermediate.int_events_fated") == [(0,)]
    assert wh.rows(FATES) == _built_at_once(tmp_path / "once", EVENTS, changed)
    assert any(row[4] == "sandbox_env" for row in wh.rows(FATES))


def test_the_usage_checks_of_a_build_see_what_it_read(tmp_path):
    wh = _built_in_batches(tmp_path, [EVENTS + LATE, REPEATS])
    since = len(EVENTS + LATE)
    with wh.connect() as con:
        assert last_build_start(con) == since
        assert check_fates_reconcile(con, since)[0]
        assert check_no_key_billed_twice(con, since)[0]
        # a repeated key the last build read, billed twice: found from its repeated keys
        con.execute(
            "UPDATE intermediate.int_events_fated SET fate = 'billable' WHERE fate = 'duplicate'"
        )
        for checked_from in (since, 0):
            passed, metadata = check_no_key_billed_twice(con, checked_from)
            assert not passed and "acme/late-dup x3" in metadata["keys"]
