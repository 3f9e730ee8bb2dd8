"""Revenue recognition at scale: the `recognize_revenue` job (SPEC 8) on a year of finalized
invoices, through the real Dagster job, each run in a fresh process.

Run:  .venv/bin/python benchmarks/bench_revenue.py --customers 10000 --months 12 \
          --events 200000 --workdir /tmp/bench-revenue
then, on a quiet machine, the same workspace measured again without rebuilding it:
      .venv/bin/python benchmarks/bench_revenue.py --workdir /tmp/bench-revenue --measure-only

Build (not the measured figure; each job's wall, CPU and peak RSS are recorded): one workspace
with the catalog of bench_pipeline (`--customers` customers, one subscription each from
2026-01-01, 20 usage charges over every charge model and a 49.00 platform fee) with prepaid
credits (METERBOOK_BENCH_WALLETS=1: a monthly promotional allowance with rollover, a credit
price on the first per_unit charge, a paid pack for every tenth customer). METERBOOK_NOW is
2027-01-01T00:00Z, the instant 2026 ends, so every month of 2026 can be closed and finalized;
METERBOOK_PDF=off (HTML documents only: PDFs are not what this measures). For each month from
2026-01 in turn: its `--events` events (bench_ingest.generate_events: 20 event names, 2% exact
duplicates, timestamps over the month, ids prefixed with the month) land as one file, then
`month_end_close` and `finalize_invoices` run for it. The finalized workspace is kept in
<workdir>/finalized and never touched by revenue recognition.

Measure: the finalized workspace is copied to <workdir>/measured (not timed), then, each in
a fresh process (wall, CPU of the process and of the dbt processes it starts, peak RSS of
either, and each Dagster step's seconds):
1. `recognize_revenue` for the last month (the first recognition the workspace ever runs);
2. `recognize_revenue` for the last month again (a re-run: it must change nothing, so
   fct_revenue_schedule, fct_revenue_rollforward and fct_revenue_journal are compared before
   and after it: the md5 of every row as text, in the order of all its columns, with the
   column names and types);
3. `recognize_revenue` for a middle month (after it, the schedule must still be identical and
   the last month's roll-forward and journal rows too).
Then the warehouse is read (read-only): finalized invoices and lines, schedule rows (per line,
and per line kind: usage, fixed_fee, the others), journal lines and roll-forward rows of the
months recognized. It prints each figure, then one JSON line with all of them.

`--measure-only` (with `--workdir`) skips the build and measures again on a fresh copy of the
workdir's finalized workspace (the sizes and wallets are those it was built with, build.json,
written after every month: a build stopped after month k is measured with k months).
`--no-wallets`: the same catalog without prepaid credits (METERBOOK_BENCH_WALLETS unset).
"""

from __future__ import annotations

import argparse
import calendar
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_history import _made, months  # noqa: E402
from bench_ingest import run_phase  # noqa: E402
from bench_pipeline import WALLETS_ENV, _job_phase, catalog_document  # noqa: E402

NOW = "2027-01-01T00:00:00+00:00"  # the instant 2026 ends: every month of 2026 is over
FINALIZED, MEASURED = "finalized", "measured"
REVENUE_MARTS = ("fct_revenue_schedule", "fct_revenue_rollforward", "fct_revenue_journal")
KIND_GROUPS = ("usage", "fixed_fee", "others")


def environment(wallets: bool = True) -> None:
    """Set for this process and inherited by every job's process."""
    if wallets:
        os.environ[WALLETS_ENV] = "1"  # before the catalog is made: every customer has credits
    else:
        os.environ.pop(WALLETS_ENV, None)
    os.environ["METERBOOK_NOW"] = NOW
    os.environ["METERBOOK_PDF"] = "off"  # 10,000 PDFs a month would take half an hour each


def _guarded_job(home: str, job: str, partition: str | None, out) -> None:
    """_job_phase, its failure sent back as an error (run_phase would wait forever for figures
    from a process that exited without sending any)."""
    try:
        _job_phase(home, job, partition, out)
    except SystemExit as exc:  # _job_phase's: the job's own error
        out.put({"error": str(exc)})
    except BaseException as exc:  # noqa: BLE001
        out.put({"error": f"{type(exc).__name__}: {exc}"})


def job(home: Path, name: str, partition: str) -> dict:
    """One Dagster job in a fresh process (its own CPU and peak RSS, dbt's included)."""
    figures = run_phase(_guarded_job, str(home), name, partition)
    if "error" in figures:
        raise SystemExit(f"in {home}: {figures['error']}")
    return figures


def say(text: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {text}", flush=True)


# -- build -----------------------------------------------------------------------------------


def build(work: Path, customers: int, k: int, n: int) -> dict:
    import yaml  # noqa: PLC0415

    home = work / FINALIZED
    shutil.rmtree(home, ignore_errors=True)
    (work / "build.json").unlink(missing_ok=True)
    (home / "catalog").mkdir(parents=True)
    (home / "landing" / "events").mkdir(parents=True)
    (home / "catalog" / "catalog.yaml").write_text(yaml.safe_dump(catalog_document(customers)))
    (work / "events").mkdir(exist_ok=True)
    record = {"customers": customers, "months": 0, "months_asked": k, "events_per_month": n}
    record["now"], record["wallets"] = NOW, bool(os.environ.get(WALLETS_ENV))
    record["closes"], record["finalizes"], started = {}, {}, time.perf_counter()
    for month in months(k):
        key = f"{month:%Y-%m}"
        start = datetime(month.year, month.month, 1, tzinfo=UTC)
        end = start + timedelta(days=calendar.monthrange(month.year, month.month)[1])
        made = time.perf_counter()
        events = _made(work / "events" / f"{key}-{n}-{customers}.jsonl", n, start, end, key,
                       customers)  # fmt: skip
        made = time.perf_counter() - made
        shutil.copy(events, home / "landing" / "events" / f"{key}.jsonl")
        close = record["closes"][key] = job(home, "month_end_close", key)
        final = record["finalizes"][key] = job(home, "finalize_invoices", key)
        say(
            f"{key}: events {made:.1f} s, close {close['wall_s']:.1f} s, "
            f"finalize {final['wall_s']:.1f} s (build so far {_minutes(started)})"
        )
        # after every month: a build stopped later can still be measured (--measure-only)
        record["months"], record["build_wall_s"] = (
            len(record["closes"]),
            time.perf_counter() - started,
        )
        (work / "build.json").write_text(json.dumps(record))
    return record


def _minutes(started: float) -> str:
    return f"{(time.perf_counter() - started) / 60:.1f} min"


# -- measure ---------------------------------------------------------------------------------


def measure(work: Path, record: dict) -> dict:
    all_months = [f"{m:%Y-%m}" for m in months(record["months"])]
    last, middle = all_months[-1], all_months[(len(all_months) - 1) // 2]
    home = work / MEASURED
    shutil.rmtree(home, ignore_errors=True)
    say(f"copying {work / FINALIZED} to {home}")
    shutil.copytree(work / FINALIZED, home)
    warehouse = home / "warehouse.duckdb"
    runs, checks, seen = {}, {}, {}

    say(f"recognize_revenue {last} (first)")
    runs["last_first"] = job(home, "recognize_revenue", last)
    before = seen["after_first"] = digests(warehouse, last)
    say(f"recognize_revenue {last} (re-run)")
    runs["last_rerun"] = job(home, "recognize_revenue", last)
    after = seen["after_rerun"] = digests(warehouse, last)
    checks["rerun_identical"] = _compare(before, after, REVENUE_MARTS)
    if middle != last:
        say(f"recognize_revenue {middle} (middle month)")
        runs["middle"] = job(home, "recognize_revenue", middle)
        later = seen["after_middle"] = digests(warehouse, last)
        kept = ("fct_revenue_schedule", "last_month_rollforward", "last_month_journal")
        checks["middle_run_keeps_last_month"] = _compare(after, later, kept)
    report = {
        "customers": record["customers"],
        "months": record["months"],
        "months_asked": record["months_asked"],
        "events_per_month": record["events_per_month"],
        "wallets": record["wallets"],
        "last_month": last,
        "middle_month": middle if middle != last else None,
        "build": {k: record[k] for k in ("closes", "finalizes", "build_wall_s")},
        "runs": runs,
        "checks": checks,
        "digests": seen,
        "warehouse": figures(warehouse, [last] + ([middle] if "middle" in runs else [])),
    }
    return report


def _compare(a: dict, b: dict, tables) -> dict:
    return {t: a[t] == b[t] for t in tables}


def digests(warehouse: Path, last: str) -> dict[str, dict]:
    """Per revenue mart: its row count and the md5 of its column names and types and of every
    row as text, rows in the order of all their columns (an ordered export, hashed as it is
    read); the roll-forward and journal also for the last month's rows alone."""
    from orchestration.sql import connect  # noqa: PLC0415
    from orchestration.warehouse.models import relation  # noqa: PLC0415

    con = connect(warehouse, read_only=True)
    try:
        out = {t: _digest(con, relation(t)) for t in REVENUE_MARTS}
        for t, name in (
            ("fct_revenue_rollforward", "rollforward"),
            ("fct_revenue_journal", "journal"),
        ):
            out[f"last_month_{name}"] = _digest(con, relation(t), f"revenue_month = '{last}'")
    finally:
        con.close()
    return out


def _digest(con, table: str, where: str | None = None) -> dict:
    schema, name = table.split(".")
    columns = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns"
        " WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
        [schema, name],
    ).fetchall()
    md5 = hashlib.md5(repr(columns).encode())
    order = ", ".join(f'"{c}"' for c, _ in columns)
    result = con.sql(
        f"SELECT CAST(t AS VARCHAR) FROM {table} t"
        f"{' WHERE ' + where if where else ''} ORDER BY {order}"
    )
    rows = 0
    for batch in result.to_arrow_reader(100_000):
        lines = batch.column(0).to_pylist()
        rows += len(lines)
        md5.update(("\n".join(lines) + "\n").encode())
    return {"rows": rows, "md5": md5.hexdigest()}


def figures(warehouse: Path, recognized: list[str]) -> dict:
    """What the warehouse holds once the jobs are done (a read-only connection)."""
    from orchestration.sql import connect  # noqa: PLC0415
    from orchestration.warehouse.models import relation  # noqa: PLC0415

    group = "CASE WHEN {k} IN ('usage', 'fixed_fee') THEN {k} ELSE 'others' END"
    con = connect(warehouse, read_only=True)
    try:
        one = lambda sql, *p: con.execute(sql, list(p)).fetchone()[0]  # noqa: E731
        lines, schedule = relation("int_revenue_lines"), relation("fct_revenue_schedule")
        journal, rollforward = relation("fct_revenue_journal"), relation("fct_revenue_rollforward")
        out = {
            "finalized_invoices": one("SELECT count(*) FROM meterbook_ledger.invoices"),
            "ledger_lines": one("SELECT count(*) FROM meterbook_ledger.invoice_lines"),
            "revenue_lines": one(f"SELECT count(*) FROM {lines}"),
            "schedule_rows": one(f"SELECT count(*) FROM {schedule}"),
            "journal_lines": one(f"SELECT count(*) FROM {journal}"),
            "rollforward_rows": one(f"SELECT count(*) FROM {rollforward}"),
        }
        out["rows_per_line"] = (
            out["schedule_rows"] / out["revenue_lines"] if out["revenue_lines"] else None
        )
        out["lines_by_kind"] = dict(
            con.execute(f"SELECT kind, count(*) FROM {lines} GROUP BY ALL ORDER BY ALL").fetchall()
        )
        out["schedule_rows_by_kind"] = dict(
            con.execute(
                f"SELECT line_kind, count(*) FROM {schedule} GROUP BY ALL ORDER BY ALL"
            ).fetchall()
        )
        grouped_lines = dict(
            con.execute(
                f"SELECT {group.format(k='kind')}, count(*) FROM {lines} GROUP BY ALL"
            ).fetchall()
        )
        grouped_rows = dict(
            con.execute(
                f"SELECT {group.format(k='line_kind')}, count(*) FROM {schedule} GROUP BY ALL"
            ).fetchall()
        )
        out["by_group"] = {
            g: {
                "lines": grouped_lines.get(g, 0),
                "schedule_rows": grouped_rows.get(g, 0),
                "rows_per_line": grouped_rows.get(g, 0) / grouped_lines[g]
                if grouped_lines.get(g)
                else None,
            }
            for g in KIND_GROUPS
        }
        out["months"] = {}
        for month in recognized:
            first = datetime.strptime(month, "%Y-%m").date()
            end = (first.replace(day=28) + timedelta(days=4)).replace(day=1)
            out["months"][month] = {
                "journal_lines": one(
                    f"SELECT count(*) FROM {journal} WHERE revenue_month = ?", month
                ),
                "rollforward_rows": one(
                    f"SELECT count(*) FROM {rollforward} WHERE revenue_month = ?", month
                ),
                "schedule_rows_in_month": one(
                    f"SELECT count(*) FROM {schedule} WHERE revenue_date >= ? AND revenue_date < ?",
                    first,
                    end,
                ),
            }
    finally:
        con.close()
    return out


# -- report ----------------------------------------------------------------------------------


def print_report(r: dict) -> None:
    w = r["warehouse"]
    print(
        f"\n{r['customers']:,} customers, {r['months']} months x {r['events_per_month']:,} events,"
        f" {'wallets' if r['wallets'] else 'no wallets'}; recognized: {r['last_month']} (twice), {r['middle_month']}"
    )
    print(f"{'build job (not measured)':<34}{'wall s':>9}{'cpu s':>9}{'peak MiB':>10}")
    for month in r["build"]["closes"]:
        for label, f in (
            ("close", r["build"]["closes"][month]),
            ("finalize", r["build"]["finalizes"][month]),
        ):
            print(
                f"{label + ' ' + month:<34}{f['wall_s']:>9.1f}{f['cpu_s']:>9.1f}{f['peak_rss_mib']:>10,.0f}"
            )
    print(f"build, in all: {r['build']['build_wall_s'] / 60:.1f} min")
    print(f"\n{'finalized invoices':<44}{w['finalized_invoices']:>12,}")
    print(f"{'finalized lines (ledger)':<44}{w['ledger_lines']:>12,}")
    print(f"{'finalized lines (int_revenue_lines)':<44}{w['revenue_lines']:>12,}")
    print(f"{'schedule rows (fct_revenue_schedule)':<44}{w['schedule_rows']:>12,}")
    print(f"{'schedule rows per line':<44}{w['rows_per_line']:>12.2f}")
    for g, f in w["by_group"].items():
        per = f"{f['rows_per_line']:.2f}" if f["rows_per_line"] is not None else "-"
        print(f"  {g:<12}{f['lines']:>12,} lines{f['schedule_rows']:>12,} rows{per:>8} rows/line")
    others = {k: v for k, v in w["lines_by_kind"].items() if k not in ("usage", "fixed_fee")}
    if others:
        print("  others: " + ", ".join(
            f"{k} {v:,} lines / {w['schedule_rows_by_kind'].get(k, 0):,} rows"
            for k, v in others.items()
        ))  # fmt: skip
    for month, f in w["months"].items():
        print(
            f"{month}: journal lines {f['journal_lines']:,}, roll-forward rows "
            f"{f['rollforward_rows']:,}, schedule rows dated in the month {f['schedule_rows_in_month']:,}"
        )
    print(f"{'journal lines, all months':<44}{w['journal_lines']:>12,}")
    print(f"{'roll-forward rows, all months':<44}{w['rollforward_rows']:>12,}")
    print(f"\n{'recognize_revenue (measured)':<34}{'wall s':>9}{'cpu s':>9}{'peak MiB':>10}")
    labels = {
        "last_first": f"{r['last_month']}, first",
        "last_rerun": f"{r['last_month']}, re-run",
        "middle": f"{r['middle_month']}, middle month",
    }
    for key, f in r["runs"].items():
        print(f"{labels[key]:<34}{f['wall_s']:>9.1f}{f['cpu_s']:>9.1f}{f['peak_rss_mib']:>10,.0f}")
        print("    steps: " + ", ".join(
            f"{s} {v:.1f} s" for s, v in sorted(f["steps"].items(), key=lambda kv: -kv[1])
        ))  # fmt: skip
    for check, tables in r["checks"].items():
        print(
            f"{check}: "
            + ", ".join(f"{t} {'same' if same else 'DIFFERENT'}" for t, same in tables.items())
        )
    for when, tables in r["digests"].items():
        print(
            f"  {when}: "
            + ", ".join(f"{t} {d['rows']:,} rows {d['md5']}" for t, d in tables.items())
        )
    print(json.dumps(r))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--months", type=int, default=12, help="from 2026-01; at most 12")
    parser.add_argument("--events", type=int, default=200_000, help="events per month")
    parser.add_argument("--workdir", type=Path, default=None, help="kept when given")
    parser.add_argument(
        "--measure-only",
        action="store_true",
        help="measure again on the workdir's finalized workspace (sizes from its build.json)",
    )
    parser.add_argument(
        "--no-wallets",
        action="store_true",
        help="without METERBOOK_BENCH_WALLETS: no prepaid credits in the catalog",
    )
    args = parser.parse_args()
    if not 1 <= args.months <= 12:
        parser.error("--months: 1 to 12 (the months of 2026)")
    if args.measure_only and args.workdir is None:
        parser.error("--measure-only needs the --workdir the workspace was built in")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-revenue-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        if args.measure_only:
            if not (work / "build.json").exists():
                raise SystemExit(f"{work / 'build.json'} is missing: no month was finalized there")
            record = json.loads((work / "build.json").read_text())
            if record["months"] < record["months_asked"]:
                print(
                    f"the build stopped after {record['months']} of {record['months_asked']} months"
                )
            environment(record["wallets"])
        else:
            environment(not args.no_wallets)
            record = build(work, args.customers, args.months, args.events)
        print_report(measure(work, record))
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
