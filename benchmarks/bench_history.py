"""What stored history costs: the nightly refresh of one day and the close of the last month,
with K earlier months stored and without them, through the real Dagster jobs.

Run:  .venv/bin/python benchmarks/bench_history.py --months 6 --events 1000000

Each month has N events (`--customers` customers, 20 event names, 2% exact duplicates,
timestamps spread over the month), the catalog of bench_pipeline (one meter per event name,
20 charges over every charge model). Two workspaces:

- with history: months 1 .. K-1 each dropped as a landing file and closed in turn
  (`month_end_close`), as a workspace accumulates them;
- without: nothing before month K.

Then in both, the same steps, each measured in a fresh process (wall, CPU of the process and
of the dbt processes it starts, peak RSS of either):
1. month K's events up to its last day are ingested (`ingest_landing_files`; not measured);
2. refresh: the last day's file lands and `daily_usage_refresh` runs for that day (ingest,
   fates of the new events, usage of the day);
3. close: `month_end_close` for month K (windows, rating, invoices, documents, checks).
It prints each figure and the ratio with / without. The issue's target: <= 1.2 for both.
"""

from __future__ import annotations

import argparse
import calendar
import json
import os
import shutil
import sys
import tempfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_ingest import generate_events, run_phase  # noqa: E402
from bench_pipeline import _job_phase, catalog_document  # noqa: E402

FIRST_MONTH = date(2026, 1, 1)


def months(k: int) -> list[date]:
    out, day = [], FIRST_MONTH
    for _ in range(k):
        out.append(day)
        day = (day.replace(day=28) + timedelta(days=4)).replace(day=1)
    return out


def job(home: Path, name: str, partition: str | None = None) -> dict:
    """One Dagster job in a fresh process (its own CPU and peak RSS, dbt's included)."""
    return run_phase(_job_phase, str(home), name, partition)


def workspace(work: Path, name: str, customers: int) -> Path:
    import yaml  # noqa: PLC0415

    home = work / name
    shutil.rmtree(home, ignore_errors=True)
    (home / "catalog").mkdir(parents=True)
    (home / "landing" / "events").mkdir(parents=True)
    document = catalog_document(customers=customers)
    (home / "catalog" / "catalog.yaml").write_text(yaml.safe_dump(document))
    return home


def month_files(work: Path, k: int, n: int, customers: int) -> dict[str, Path]:
    """One file per earlier month, and the last month split before its last day."""
    files = {}
    all_months = months(k)
    for month in all_months:
        start = datetime(month.year, month.month, 1, tzinfo=UTC)
        days = calendar.monthrange(month.year, month.month)[1]
        end = start + timedelta(days=days)
        key = f"{month:%Y-%m}"
        if month != all_months[-1]:
            files[key] = _made(work / f"{key}.jsonl", n, start, end, key, customers)
            continue
        last_day = end - timedelta(days=1)
        early_n = n * (days - 1) // days
        files["early"] = _made(
            work / f"{key}-early.jsonl", early_n, start, last_day, key, customers
        )
        files["last_day"] = _made(
            work / f"{key}-last.jsonl", n - early_n, last_day, end, f"{key}L", customers
        )
    return files


def _made(path: Path, n: int, start: datetime, end: datetime, prefix: str, customers: int):
    """n events in [start, end) as bench_ingest generates them (2% exact duplicates), their
    ids prefixed so that no two files share a key."""
    if not path.exists():
        generate_events(
            path,
            n,
            start_us=int(start.timestamp() * 1_000_000),
            span_ms=int((end - start).total_seconds() * 1000),
            prefix=prefix,
            customers=customers,
        )
    return path


def measure(home: Path, files: dict[str, Path], last: date) -> dict:
    landing = home / "landing" / "events"
    shutil.copy(files["early"], landing / files["early"].name)
    job(home, "ingest_landing_files")
    shutil.copy(files["last_day"], landing / files["last_day"].name)
    last_day = date(last.year, last.month, calendar.monthrange(last.year, last.month)[1])
    refresh = job(home, "daily_usage_refresh", last_day.isoformat())
    close = job(home, "month_end_close", f"{last:%Y-%m}")
    return {"refresh": refresh, "close": close}


def run(k: int, n: int, customers: int, work: Path) -> dict:
    last_of = datetime(2026, 12, 31, tzinfo=UTC)
    os.environ["METERBOOK_NOW"] = last_of.isoformat()  # every month closable
    files = month_files(work, k, n, customers)
    all_months = months(k)
    with_home = workspace(work, "with-history", customers)
    history = {}
    for month in all_months[:-1]:
        key = f"{month:%Y-%m}"
        shutil.copy(files[key], with_home / "landing" / "events" / files[key].name)
        history[key] = job(with_home, "month_end_close", key)
    without_home = workspace(work, "without-history", customers)
    report = {
        "months": k,
        "events_per_month": n,
        "customers": customers,
        "history_closes": history,
        "with_history": measure(with_home, files, all_months[-1]),
        "without_history": measure(without_home, files, all_months[-1]),
    }
    return report


def print_report(r: dict) -> None:
    print(
        f"\n{r['months']} months x {r['events_per_month']:,} events, {r['customers']:,} customers"
    )
    print(f"{'step':<34}{'wall s':>9}{'cpu s':>9}{'peak MiB':>10}")
    for month, f in r["history_closes"].items():
        print(
            f"{'close ' + month + ' (building history)':<34}"
            f"{f['wall_s']:>9.1f}{f['cpu_s']:>9.1f}{f['peak_rss_mib']:>10,.0f}"
        )
    for step in ("refresh", "close"):
        w, wo = r["with_history"][step], r["without_history"][step]
        for label, f in ((f"{step}, with history", w), (f"{step}, without", wo)):
            print(f"{label:<34}{f['wall_s']:>9.1f}{f['cpu_s']:>9.1f}{f['peak_rss_mib']:>10,.0f}")
        print(
            f"{step}: with / without history: cpu {w['cpu_s'] / wo['cpu_s']:.2f}x, "
            f"wall {w['wall_s'] / wo['wall_s']:.2f}x"
        )
    print(json.dumps(r))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--months", type=int, default=6, help="K: months, the last measured")
    parser.add_argument("--events", type=int, default=1_000_000, help="N: events per month")
    parser.add_argument("--customers", type=int, default=2_000)
    parser.add_argument("--workdir", type=Path, default=None, help="kept when given")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-history-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        print_report(run(args.months, args.events, args.customers, work))
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
