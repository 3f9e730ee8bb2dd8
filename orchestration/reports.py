"""What `meterbook events` and `meterbook invoices` print, for the CLI and the demo alike."""

from __future__ import annotations

import contextlib
import json
import sys
from contextlib import contextmanager
from decimal import Decimal

from orchestration.billing.invoice_json import format_invoices_table
from orchestration.billing.ledger import invoices_with_ledger
from orchestration.billing.lineage import line_events
from orchestration.billing.verify import verify_warehouse
from orchestration.defs.dbt.runner import environment
from orchestration.ingest.fates_report import (
    FATES,
    NoFatesYet,
    events_report,
    format_events_report,
)
from orchestration.workspace import Workspace

# held events printed as text; a file of a million bad lines must not print a million lines
HELD_SHOWN = 20


class NoWarehouse(RuntimeError):
    """Nothing has been ingested or closed in this workspace yet."""


class NothingToShow(LookupError):
    """The question was understood and the answer is empty: said in one line, exit code 1."""


def events_text(
    ws: Workspace, period: str | None, as_json: bool, held_shown: int | None = HELD_SHOWN
) -> str:
    """Every event's fate, for one month or all of them; as text, the first `held_shown`
    held events (None: all), JSON always has every one."""
    with _reader(ws) as con:
        report = events_report(con, period, None if as_json else held_shown)
    if period and not report["lines_read"]:
        raise NothingToShow(f"no event has a timestamp in {period} (UTC)")
    if as_json:
        return json.dumps(report, indent=2)
    return format_events_report(report)


def invoices_text(ws: Workspace, close_month: str, customer: str | None, as_json: bool) -> str:
    """The month's invoices (SPEC 5 JSON, or a table), finalized ones from the ledger."""
    with _reader(ws) as con:
        document = invoices_with_ledger(con, close_month, customer)
        if not document["invoices"]:
            raise NothingToShow(_why_no_invoices(con, close_month, customer))
    return json.dumps(document, indent=2) if as_json else format_invoices_table(document)


def wallet_document(ws: Workspace, customer: str | None, today) -> dict:
    """SPEC 7: each wallet's grants, balances, draws and ledger (`wallets/report.py`)."""
    from orchestration.billing.wallets.ledger import ledger_entries  # noqa: PLC0415
    from orchestration.billing.wallets.report import wallet_report  # noqa: PLC0415

    with _reader(ws) as con:
        entries = ledger_entries(con, customer)
    return wallet_report(entries, today)


def revenue_document(ws: Workspace, month: str) -> tuple[dict, list[dict]]:
    """SPEC 8: the month's revenue report and its journal lines (`revenue/`), as the
    revenue job last built them."""
    from orchestration.billing.revenue.journal import journal_rows  # noqa: PLC0415
    from orchestration.billing.revenue.report import revenue_document as build  # noqa: PLC0415
    from orchestration.catalog import load_catalog  # noqa: PLC0415
    from orchestration.warehouse.models import model_exists  # noqa: PLC0415

    with _reader(ws) as con:
        if not model_exists(con, "fct_revenue_rollforward"):
            raise NothingToShow("no revenue built yet: finalize a month first")
        document = build(con, month)
        accounts = load_catalog(ws.catalog_dir).settings.accounts
        journal = journal_rows(con, month, accounts)
    return document, journal


def finalized_count(ws: Workspace) -> int:
    """How many invoices the ledger holds (0 before the first finalization)."""
    from orchestration.warehouse.tables import table_exists  # noqa: PLC0415

    if not ws.warehouse_path.exists():
        return 0
    with _reader(ws) as con:
        if not table_exists(con, "meterbook_ledger", "invoices"):
            return 0
        return con.execute("SELECT count(*) FROM meterbook_ledger.invoices").fetchall()[0][0]


def require_invoices(ws: Workspace, close_month: str) -> None:
    """NothingToShow, saying why, when the month has neither drafts nor finalized invoices
    (counted, not built: at ten thousand invoices building them takes seconds)."""
    from orchestration.warehouse.models import model_exists, with_refs  # noqa: PLC0415
    from orchestration.warehouse.tables import table_exists  # noqa: PLC0415

    count = "SELECT count(*) FROM {} WHERE close_month = ?"
    with _reader(ws) as con:
        total = 0
        if model_exists(con, "fct_invoices"):
            sql = with_refs(count.format("{{ ref('fct_invoices') }}"))
            total += con.execute(sql, [close_month]).fetchall()[0][0]
        if table_exists(con, "meterbook_ledger", "invoices"):
            sql = count.format("meterbook_ledger.invoices")
            total += con.execute(sql, [close_month]).fetchall()[0][0]
        if not total:
            raise NothingToShow(_why_no_invoices(con, close_month, None))


def _why_no_invoices(con, close_month: str, customer: str | None) -> str:
    if customer is not None:
        others = len(invoices_with_ledger(con, close_month)["invoices"])
        if others:
            return f"customer {customer} has no invoice for {close_month} (the month has {others})"
    try:
        events = events_report(con, close_month, held_limit=0)["lines_read"]
    except NoFatesYet:
        return f"{close_month} has no invoices, and no event was ingested yet"
    if events:
        return (
            f"{close_month} has no invoices but {events} events: "
            f"`meterbook close --period {close_month}` builds them"
        )
    return f"{close_month} has no invoices and no events"


def demo_summary_text(ws: Workspace, months: list[str], samples: int = 3) -> str:
    """What the demo prints: the months side by side, then a few sample invoices."""
    with _reader(ws) as con:
        invoices = {m: invoices_with_ledger(con, m)["invoices"] for m in months}
        fates = {m: events_report(con, m) for m in months}
    # latest month first: it has the adjustments for late events
    candidates = [i for m in reversed(months) for i in invoices[m]]
    picked = pick_samples(candidates, samples)
    return "\n\n".join(
        [
            format_months_summary(invoices, fates),
            f"{len(picked)} sample invoices:",
            *map(_block, picked),
        ]
    )


def format_months_summary(invoices: dict[str, list[dict]], fates: dict[str, dict]) -> str:
    """One row per month: invoices, their statuses and totals per currency; then one row per
    month of event fates (events counted by their own timestamp)."""
    rows = [("Month", "Invoices", "Status", "Totals")]
    rows += [
        (m, str(len(invs)), _counted(i["status"] for i in invs), _totals(invs))
        for m, invs in invoices.items()
    ]
    events = [("Month", "Events", *FATES)]
    events += [
        (m, f"{r['lines_read']:,}", *(f"{r['fates'][f]:,}" for f in FATES))
        for m, r in fates.items()
    ]
    return _table(rows, right=(1,)) + "\n\n" + _table(events, right=range(1, 2 + len(FATES)))


def pick_samples(candidates: list[dict], count: int) -> list[dict]:
    """`count` invoices that between them show the most: each adds a currency, a status or a
    kind of line the ones before lacked; the first such in `candidates` order."""
    picked: list[int] = []
    seen: set[str] = set()
    for _ in range(min(count, len(candidates))):
        best = max(
            (i for i in range(len(candidates)) if i not in picked),
            key=lambda i: len(_features(candidates[i]) - seen),
        )
        picked.append(best)
        seen |= _features(candidates[best])
    return [candidates[i] for i in picked]


def _block(invoice: dict) -> str:
    text = format_invoices_table({"period": None, "invoices": [invoice]})
    return text.split("\n", 2)[2].rstrip("\n")  # without the table's "Invoices for" heading


def _features(invoice: dict) -> set[str]:
    kinds = {f"kind:{line['kind']}" for line in invoice["lines"]}
    return {f"currency:{invoice['currency']}", f"status:{invoice['status']}", *kinds}


def _counted(values) -> str:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return ", ".join(f"{value} {n}" for value, n in sorted(counts.items())) or "-"


def _totals(invoices: list[dict]) -> str:
    by_currency: dict[str, Decimal] = {}
    for invoice in invoices:
        currency = invoice["currency"]
        by_currency[currency] = by_currency.get(currency, Decimal(0)) + Decimal(invoice["total"])
    return ", ".join(f"{c} {total:,}" for c, total in sorted(by_currency.items())) or "-"


def _table(rows: list[tuple[str, ...]], right: range | tuple[int, ...] = ()) -> str:
    """Aligned columns; the columns in `right` (numbers) are right-aligned."""
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    return "\n".join(
        "  ".join(
            cell.rjust(w) if c in right else cell.ljust(w)
            for c, (cell, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    )


def line_events_text(ws: Workspace, line_id: str, as_json: bool) -> str:
    """The billable events behind usage line `line_id` (lineage, found on demand)."""
    with _reader(ws) as con:
        events = line_events(con, line_id)
    if not events:
        raise NothingToShow(
            f"{line_id}: no billable events (not a usage line id, or none in its window; "
            "line ids are in `meterbook invoices --period YYYY-MM --json`)"
        )
    if as_json:
        return json.dumps({"line_id": line_id, "events": events}, indent=2, default=str)
    rows = [f"{line_id}: {len(events)} billable events"]
    rows += [
        f"  {e['event_ts']:%Y-%m-%dT%H:%M:%S.%fZ}  {e['customer_id']}/{e['event_id']}"
        f"  {e['path']}:{e['line_no']}"
        for e in events
    ]
    return "\n".join(rows)


def verify_text(ws: Workspace, as_json: bool) -> tuple[bool, str]:
    """Every check over everything stored (`meterbook verify`): the usage stage's dbt data
    tests over every event, lines read = fates per file and day, no key billed twice, every
    close month's lines against its events, and the ledger. Builds check only what they add;
    this is the full proof, on demand."""
    results = {"dbt_usage_tests": _verify_dbt_usage(ws)}
    with _reader(ws) as con:
        results.update(verify_warehouse(con))
    passed = all(ok for ok, _ in results.values())
    if as_json:
        body = {name: {"passed": ok, **meta} for name, (ok, meta) in results.items()}
        return passed, json.dumps({"passed": passed, "checks": body}, indent=2, default=str)
    lines = [f"{'ok    ' if ok else 'FAILED'} {name}" for name, (ok, _) in results.items()]
    lines += [
        f"  {name}: {json.dumps(meta, default=str)}"
        for name, (ok, meta) in results.items()
        if not ok
    ]
    lines.append("verify: every check passed" if passed else "verify: some checks FAILED")
    return passed, "\n".join(lines)


def _verify_dbt_usage(ws: Workspace) -> tuple[bool, dict]:
    from orchestration.defs.dbt.runner import DbtRunError, run_dbt  # noqa: PLC0415
    from orchestration.defs.resources import MeterbookWorkspace  # noqa: PLC0415

    if not ws.warehouse_path.exists():
        raise NoWarehouse(f"no warehouse at {ws.warehouse_path}: nothing to verify yet")
    workspace = MeterbookWorkspace(home=str(ws.home))
    try:
        with workspace.exclusive() as warehouse, environment({"METERBOOK_VERIFY_ALL": "1"}):
            args = ["test", "--select", "tag:usage", "--quiet", *_unbuilt(warehouse)]
            # dbt's log would mix with what verify prints (its JSON): to stderr
            with contextlib.redirect_stdout(sys.stderr):
                run_dbt(warehouse, args)
    except DbtRunError as exc:
        return False, {"error": str(exc)}
    return True, {}


def _unbuilt(warehouse) -> list[str]:
    """`--exclude` for what verify's dbt tests must not check: the windowed quantities, which
    hold the last close month built (each month's lines are checked in Python, below), and
    the usage models not built in this warehouse (daily usage is built only by the daily
    refresh)."""
    from orchestration.sql import connect  # noqa: PLC0415
    from orchestration.warehouse.models import model_exists  # noqa: PLC0415

    con = connect(warehouse)
    try:
        missing = [m for m in ("fct_daily_meter_usage",) if not model_exists(con, m)]
    finally:
        con.close()
    return ["--exclude", "int_meter_quantities_windowed", *missing]


@contextmanager
def _reader(ws: Workspace):
    """A connection for a report, queued on the workspace lock like every process that opens
    the warehouse. Without Dagster: a report is read in a second, not three."""
    from orchestration.defs.dbt.manifest import ensure_manifest  # noqa: PLC0415
    from orchestration.locking import LOCK_WAIT_SECONDS, WRITE_LOCK, workspace_lock  # noqa: PLC0415
    from orchestration.sql import connect_when_free  # noqa: PLC0415

    if not ws.warehouse_path.exists():
        raise NoWarehouse(
            f"no warehouse at {ws.warehouse_path}: run `meterbook close` or `meterbook ingest` first"
        )
    ensure_manifest()  # the reports name dbt models through it (warehouse/models.py)
    with workspace_lock(ws.home, WRITE_LOCK, LOCK_WAIT_SECONDS):
        con = connect_when_free(ws.warehouse_path, LOCK_WAIT_SECONDS)
        try:
            yield con
        finally:
            con.close()
