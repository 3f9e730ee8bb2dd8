"""A Hypothesis state machine over the month-end lifecycle, against a simple oracle.

Random interleavings of dropping files (new, late, copies, duplicate events, half-written
then completed), ingest, close of an open month, finalize, void and re-runs, on a one-meter
catalog where every event bills 1.00. The oracle only counts events:

- never twice, after every step: for each period, the calls billed on finalized invoices that
  are not void (the period's own usage lines, plus adjustment lines naming the period) are at
  most the distinct valid events of that period dropped so far;
- exactly once, at the end: every month is closed and finalized in order (closing again
  whenever finalization says the drafts are stale), and then each period whose own invoice is
  not void has billed exactly its events;
- invoice numbers stay gapless and the frozen documents agree with their rows, throughout.

A void is terminal (SPEC 3.3 leaves re-invoicing to us; see finalize.py): a voided period's
own usage is not billed again, so it gets the "never twice" check only.

Used by tests/close/test_close_lifecycle_property.py (a few examples, in CI) and by
scripts/soak_lifecycle.py (as many as you like).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
import textwrap
from collections import defaultdict
from pathlib import Path

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from orchestration import cli
from orchestration.billing.reconciliation import check_ledger
from orchestration.sql import connect
from orchestration.workspace import Workspace

CATALOG = """
settings: {invoice_prefix: LC, grace_days: 3, default_currency: USD}
meters:
  - {code: api_calls, name: API calls, event_name: api.request, aggregation: count}
plans:
  - code: calls
    name: Calls
    currency: USD
    versions:
      - version: 1
        effective_from: 2026-01-01
        charges: [{meter: api_calls, model: per_unit, unit_price: "1.00"}]
customers:
  - {id: acme, name: Acme, currency: USD}
subscriptions:
  - {id: sub_acme, customer_id: acme, plan: calls, start_date: 2026-10-01}
"""
USAGE_MONTHS = ("2026-10", "2026-11")
SETTLE_MONTHS = (*USAGE_MONTHS, "2026-12")  # December carries November's late usage
NOW = "2027-01-10T00:00:00Z"  # every month above has ended
STALE = "again, then finalize"  # what a refused finalize tells the user to do

# How many sequences ran, for the soak script's report.
RUNS = {"sequences": 0, "steps": 0, "closes": 0, "refused_finalizes": 0}


def event_line(event_id: str, month: str, day: int) -> str:
    return json.dumps(
        {"event_id": event_id, "customer_id": "acme", "event_name": "api.request",
         "timestamp": f"{month}-{day:02d}T12:00:00Z"}
    )  # fmt: skip


class LifecycleMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self._saved_env = dict(os.environ)
        self.root = Path(tempfile.mkdtemp(prefix="lifecycle-"))
        self.ws = Workspace(self.root / "ws").ensure()
        (self.ws.catalog_dir / "catalog.yaml").write_text(textwrap.dedent(CATALOG))
        os.environ["METERBOOK_NOW"] = NOW
        self.events: dict[str, str] = {}  # event_id -> month: the valid events dropped
        self.files: list[str] = []  # bytes of every complete file dropped, for copies
        self.half: dict[str, tuple[str, str, str]] = {}  # name -> (complete text, id, month)
        self.seq = 0
        RUNS["sequences"] += 1

    # --- producers ------------------------------------------------------------------------

    def _drop(self, text: str) -> str:
        self.seq += 1
        name = f"f{self.seq:03d}.jsonl"
        (self.ws.landing_dir / name).write_text(text)
        return name

    def _new_events(self, month: str, count: int, days) -> str:
        lines = []
        for day in days[:count]:
            self.seq += 1
            event_id = f"e{self.seq}"
            self.events[event_id] = month
            lines.append(event_line(event_id, month, day))
        return "".join(line + "\n" for line in lines)

    @rule(
        month=st.sampled_from(USAGE_MONTHS),
        days=st.lists(st.integers(1, 28), min_size=1, max_size=4),
    )
    def drop_new_events(self, month, days):
        """New usage; for a finalized month, late usage."""
        text = self._new_events(month, len(days), days)
        self._drop(text)
        self.files.append(text)

    @precondition(lambda self: self.files)
    @rule(data=st.data())
    def drop_a_copy(self, data):
        """The same bytes again under another name: a copy, never read twice."""
        self._drop(data.draw(st.sampled_from(self.files)))

    @precondition(lambda self: self.events)
    @rule(data=st.data())
    def drop_duplicate_events(self, data):
        """Events already dropped, with the same payload, in a new file: duplicates."""
        ids = data.draw(st.lists(st.sampled_from(sorted(self.events)), min_size=1, max_size=3))
        lines = []
        for event_id in ids:
            month = self.events[event_id]
            # the same day as first written: recover it from the file that holds it
            lines.append(self._original_line(event_id) or event_line(event_id, month, 1))
        text = "".join(line + "\n" for line in lines)
        self._drop(text)
        self.files.append(text)

    def _original_line(self, event_id: str) -> str | None:
        needle = f'"event_id": "{event_id}"'
        for text in self.files:
            for line in text.splitlines():
                if needle in line:
                    return line
        return None

    @rule(month=st.sampled_from(USAGE_MONTHS), day=st.integers(1, 28))
    def drop_half_written_file(self, month, day):
        """A producer caught mid-write: the last line is cut; it completes the file later."""
        self.seq += 1
        event_id = f"h{self.seq}"
        line = event_line(event_id, month, day)
        name = self._drop(line[: len(line) // 2])
        self.half[name] = (line + "\n", event_id, month)

    @precondition(lambda self: self.half)
    @rule(data=st.data())
    def complete_half_written_file(self, data):
        name = data.draw(st.sampled_from(sorted(self.half)))
        text, event_id, month = self.half.pop(name)
        (self.ws.landing_dir / name).write_text(text)
        self.events[event_id] = month
        self.files.append(text)

    # --- finance ---------------------------------------------------------------------------

    def _cli(self, *argv: str) -> tuple[int, str]:
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = cli.main([*argv, "--home", str(self.ws.home)])
        RUNS["steps"] += 1
        return code, err.getvalue()

    @rule()
    def ingest(self):
        code, err = self._cli("ingest")
        assert code == 0, err

    @rule(month=st.sampled_from(USAGE_MONTHS))
    def close(self, month):
        self._close(month)

    def _close(self, month: str) -> None:
        RUNS["closes"] += 1
        code, err = self._cli("close", "--period", month)
        assert code == 0, err

    @rule(month=st.sampled_from(USAGE_MONTHS), ingest_first=st.booleans())
    def finalize(self, month, ingest_first):
        """Finalize, often right after an ingest: events ingested between a close and its
        finalize are what lost money before (issue 19, item 1)."""
        if ingest_first:
            self.ingest()
        code, err = self._cli("finalize", "--period", month)
        if code != 0:
            RUNS["refused_finalizes"] += 1
            # refusals are expected (never closed, or stale drafts), and must say what to do
            said = (STALE, "run `meterbook close --period", "nothing to finalize: ")
            assert any(words in err for words in said), err

    @rule(
        month=st.sampled_from(USAGE_MONTHS),
        between=st.lists(st.integers(1, 28), max_size=3),
        ingest_between=st.booleans(),
    )
    def close_then_finalize(self, month, between, ingest_between):
        """Finance's month end, with producers still dropping usage of the month between the
        close and the finalize (a step of its own: three random steps in a row are rare)."""
        self._close(month)
        if between:
            self.drop_new_events(month, between)
        self.finalize(month, ingest_between)

    @precondition(lambda self: self._ledger_exists())
    @rule(data=st.data())
    def void(self, data):
        open_ids = self._query(
            "SELECT invoice_id FROM meterbook_ledger.current_invoice_status "
            "WHERE status = 'finalized' ORDER BY 1"
        )
        if not open_ids:
            return
        invoice_id = data.draw(st.sampled_from([row[0] for row in open_ids]))
        code, err = self._cli("void", invoice_id, "--reason", "lifecycle test")
        assert code == 0, err

    # --- the oracle ------------------------------------------------------------------------

    def _ledger_exists(self) -> bool:
        return self.ws.warehouse_path.exists() and bool(
            self._query(
                "SELECT 1 FROM duckdb_tables() WHERE schema_name = 'meterbook_ledger' "
                "AND table_name = 'invoices'"
            )
        )

    def _query(self, sql: str) -> list[tuple]:
        if not self.ws.warehouse_path.exists():
            return []
        con = connect(self.ws.warehouse_path)
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()

    def billed(self) -> dict[str, int]:
        """Calls billed per period (its month) on finalized invoices that are not void."""
        rows = self._query(
            """
            SELECT strftime(coalesce(l.period_start, i.period_start), '%Y-%m'),
                   sum(l.quantity)
            FROM meterbook_ledger.invoice_lines AS l
            JOIN meterbook_ledger.invoices AS i USING (invoice_id)
            JOIN meterbook_ledger.current_invoice_status AS s USING (invoice_id)
            WHERE s.status = 'finalized' AND l.kind IN ('usage', 'adjustment')
            GROUP BY 1
            """
        )
        return {month: int(quantity) for month, quantity in rows}

    def expected(self) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for month in self.events.values():
            counts[month] += 1
        return dict(counts)

    @invariant()
    def never_billed_twice(self):
        if not self._ledger_exists():
            return
        expected = self.expected()
        for month, quantity in self.billed().items():
            assert quantity <= expected.get(month, 0), (month, quantity, expected)
        passed, details = self._check_ledger()
        assert passed, details

    def _check_ledger(self):
        con = connect(self.ws.warehouse_path)
        try:
            return check_ledger(con)
        finally:
            con.close()

    def settle_and_check_exactly_once(self) -> None:
        for month in SETTLE_MONTHS:
            self._close(month)
            code, err = self._cli("finalize", "--period", month)
            if code != 0:
                assert STALE in err, err
                self._close(month)
                code, err = self._cli("finalize", "--period", month)
                assert code == 0, err
        voided = {
            month
            for (month,) in self._query(
                "SELECT i.close_month FROM meterbook_ledger.invoices AS i "
                "JOIN meterbook_ledger.current_invoice_status AS s USING (invoice_id) "
                "WHERE s.status = 'void'"
            )
        }
        billed, expected = self.billed(), self.expected()
        for month in USAGE_MONTHS:
            if month in voided:
                assert billed.get(month, 0) <= expected.get(month, 0), (month, billed, expected)
            else:
                assert billed.get(month, 0) == expected.get(month, 0), (month, billed, expected)

    def teardown(self):
        try:
            self.settle_and_check_exactly_once()
        finally:
            if RUNS.get("report"):  # the soak script: a line per sequence, kept if it is killed
                print(f"soak: sequence {RUNS['sequences']} done, {RUNS}", flush=True)
            os.environ.clear()
            os.environ.update(self._saved_env)
            shutil.rmtree(self.root, ignore_errors=True)
