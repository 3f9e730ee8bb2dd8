"""`meterbook events`: how many events met each fate (SPEC section 6), as JSON and as text.

Reads the dbt model fct_event_fates (one row per line read) and meterbook_raw.landing_files.
With a period, only events whose timestamp falls in that UTC month are counted. Events
without a valid timestamp (rejected as malformed, missing_field or bad_timestamp) cannot be
placed in any month, so they are left out of every period report and appear only in the
report without a period, whose lines_read is therefore every line read.
"""

from __future__ import annotations

from datetime import datetime

import duckdb

from orchestration.billing.month import BillingMonth
from orchestration.warehouse.models import model_exists, relation
from orchestration.warehouse.tables import table_exists

FATES = ("billable", "unmetered", "excluded", "duplicate", "conflict", "rejected")
HELD = ("rejected", "conflict")
REASONED = ("excluded", "rejected")


def month_bounds(period: str) -> tuple[datetime, datetime]:
    """[start, end) of a 'YYYY-MM' month in UTC."""
    return BillingMonth.parse(period).bounds("UTC")


def _counted_events(period: str | None) -> tuple[str, list]:
    """SQL for the events the report counts, and its parameters."""
    base = f"SELECT * FROM {relation('fct_event_fates')}"
    if period is None:
        return base, []
    start, end = month_bounds(period)
    return base + " WHERE event_ts >= ? AND event_ts < ?", [start, end]


def _fate_counts(rows: list[tuple]) -> dict[str, int]:
    counts = dict.fromkeys(FATES, 0)
    for fate, n in rows:
        counts[fate] += n
    return counts


def _reasons(con: duckdb.DuckDBPyConnection, events: str, params: list) -> dict:
    rows = con.execute(
        f"""SELECT fate, reason, count(*) FROM ({events})
            WHERE fate IN ('excluded', 'rejected') GROUP BY ALL ORDER BY fate, reason""",
        params,
    ).fetchall()
    reasons: dict[str, dict[str, int]] = {fate: {} for fate in REASONED}
    for fate, reason, n in rows:
        reasons[fate][reason] = n
    return reasons


def _files(con: duckdb.DuckDBPyConnection, events: str, params: list, period: str | None) -> list:
    # without a period every ingested file is listed (an empty file too); with one, the files
    # that have events in it
    join = "LEFT JOIN" if period is None else "INNER JOIN"
    rows = con.execute(
        f"""SELECT f.path, f.file_sha256, e.fate, count(e.fate)
            FROM meterbook_raw.landing_files AS f
            {join} ({events}) AS e ON e.file_sha256 = f.file_sha256
            GROUP BY ALL ORDER BY min(f.file_seq), f.path, e.fate""",
        params,
    ).fetchall()
    files: dict[str, dict] = {}
    for path, sha, fate, n in rows:
        entry = files.setdefault(
            sha, {"path": path, "sha256": sha, "lines_read": 0, "fates": dict.fromkeys(FATES, 0)}
        )
        if fate is not None:
            entry["fates"][fate] += n
            entry["lines_read"] += n
    return list(files.values())


HELD_FATES = ("rejected", "conflict")


def _held(
    con: duckdb.DuckDBPyConnection, events: str, params: list, limit: int | None
) -> list[dict]:
    bound = "" if limit is None else f"LIMIT {int(limit)}"
    rows = con.execute(
        f"""SELECT fate, reason, path, line_no FROM ({events})
            WHERE fate IN {HELD_FATES} ORDER BY read_seq {bound}""",
        params,
    ).fetchall()
    return [{"fate": f, "reason": r, "path": p, "line": line} for f, r, p, line in rows]


class NoFatesYet(LookupError):
    """The usage models have not run on this warehouse yet."""


def _require_tables(con: duckdb.DuckDBPyConnection) -> None:
    if not (
        model_exists(con, "fct_event_fates") and table_exists(con, "meterbook_raw", "landing_files")
    ):
        raise NoFatesYet(
            "no event fates in this warehouse yet: ingest the landing files and run the "
            "usage models (fct_event_fates) first"
        )


def events_report(
    con: duckdb.DuckDBPyConnection, period: str | None, held_limit: int | None = None
) -> dict:
    """The SPEC 6 document: lines_read always equals the sum of fates, per file too.
    `held_limit` keeps only the first held events (a file of a million bad lines)."""
    _require_tables(con)
    events, params = _counted_events(period)
    fates = _fate_counts(
        con.execute(f"SELECT fate, count(*) FROM ({events}) GROUP BY fate", params).fetchall()
    )
    return {
        "period": period,
        "lines_read": sum(fates.values()),
        "fates": fates,
        "reasons": _reasons(con, events, params),
        "files": _files(con, events, params, period),
        "held": _held(con, events, params, held_limit),
    }


def _fate_line(fates: dict[str, int]) -> str:
    return ", ".join(f"{fate} {fates[fate]}" for fate in FATES if fates[fate])


def format_events_report(report: dict) -> str:
    """The report for people: totals with reasons, then files, then the held events."""
    scope = f"with a timestamp in {report['period']} (UTC)" if report["period"] else "all periods"
    width = max(len(f) for f in FATES)
    lines = [f"Events, {scope}: {report['lines_read']} lines read"]
    for fate in FATES:
        detail = report["reasons"].get(fate, {})
        why = "  (" + ", ".join(f"{r} {n}" for r, n in detail.items()) + ")" if detail else ""
        lines.append(f"  {fate:<{width}} {report['fates'][fate]:>10}{why}")
    lines.append(f"Files ({len(report['files'])})")
    for entry in report["files"]:
        fates = _fate_line(entry["fates"]) or "no events"
        lines.append(f"  {entry['path']}: {entry['lines_read']} lines: {fates}")
    held_total = sum(report["fates"].get(fate, 0) for fate in HELD_FATES)
    lines.append(f"Held for review ({held_total})")
    for held in report["held"]:
        lines.append(f"  {held['fate']:<9} {held['reason']:<20} {held['path']}:{held['line']}")
    if held_total > len(report["held"]):
        lines.append(f"  ... and {held_total - len(report['held'])} more: meterbook events --json")
    return "\n".join(lines)
