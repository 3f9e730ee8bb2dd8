"""A three-month price backtest against the three plain closes it replays (issue 26).

Run:  .venv/bin/python benchmarks/bench_backtest.py --customers 10000 --events-per-month 300000

The workspace is bench_pipeline's: its catalog (one meter per event name, one subscription per
customer on a plan of 20 charges over every charge model, all starting 2026-01-01) and its
events (bench_ingest's generator, 2% exact duplicates), `--events-per-month` of them in each
of 2026-08, 2026-09 and 2026-10, each month's file landed just before its close. In order:

- close 2026-08, finalize it, close 2026-09, finalize it, close 2026-10: each close is the real
  `month_end_close` Dagster job as the CLI runs it, in a fresh process (bench_pipeline's
  `_job_phase`: wall, CPU of the process and of the dbt processes it starts, peak RSS of
  either); the finalizes are timed apart (without PDFs: METERBOOK_PDF=off), so the backtest
  replays two finalized months and a draft one;
- a candidate catalog: a copy of the workspace's catalog folder with one price edited (the
  first per_unit charge's unit price, meter m00, 0.01 -> 0.012; the generator gives each
  customer 5 of the 20 event names, so about a quarter of the invoices have an m00 line);
- `meterbook backtest --catalog CANDIDATE --from 2026-08 --to 2026-10 --json`, the installed
  command in a subprocess: its wall time from start to exit, the CPU and peak RSS of that
  process (dbt runs inside it). It must exit 0 and change some invoices.

It prints each close, their sum, the backtest and the ratio backtest / sum of the closes (the
issue's target: at most 1.0), then where the backtest's time went, from the run's own event
log (the op's "baseline: ...", "rating <month> ..." messages): the two warehouse copies, the
fates build, each month's windows + dbt billing models + drafts read, and the comparison and
report files. Last, a JSON line of every figure.

With `--backtests K` the backtest runs K times on the same workspace: the first pays dbt's
whole-project parse for the sandbox warehouse (backtests/sandbox/), the later ones reuse it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_history import _made, workspace  # noqa: E402
from bench_ingest import CUSTOMERS, NOW, run_phase  # noqa: E402
from bench_pipeline import _job_phase  # noqa: E402

MONTHS = ("2026-08", "2026-09", "2026-10")
FINALIZED = MONTHS[:2]
MONTH_STARTS = {
    "2026-08": datetime(2026, 8, 1, tzinfo=UTC),
    "2026-09": datetime(2026, 9, 1, tzinfo=UTC),
    "2026-10": datetime(2026, 10, 1, tzinfo=UTC),
    "2026-11": datetime(2026, 11, 1, tzinfo=UTC),
}
MONTH_AFTER = {"2026-08": "2026-09", "2026-09": "2026-10", "2026-10": "2026-11"}
METERBOOK = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "meterbook"
# the price the candidate changes: the plan's first charge (per_unit) has unit_price 0.01
CHANGED_CHARGE = 0
CANDIDATE_PRICE = "0.012"


def month_file(work: Path, month: str, n: int, customers: int) -> Path:
    """n events over `month`, their ids prefixed with it: no two months share a key."""
    start, end = MONTH_STARTS[month], MONTH_STARTS[MONTH_AFTER[month]]
    return _made(work / f"events-{month}-{n}-{customers}.jsonl", n, start, end, month, customers)


def write_candidate(catalog_dir: Path, destination: Path) -> dict:
    """A copy of the catalog folder with one price edited; returns what changed."""
    import yaml  # noqa: PLC0415

    shutil.rmtree(destination, ignore_errors=True)
    shutil.copytree(catalog_dir, destination)
    path = destination / "catalog.yaml"
    document = yaml.safe_load(path.read_text())
    charge = document["plans"][0]["versions"][0]["charges"][CHANGED_CHARGE]
    if charge["model"] != "per_unit":
        raise SystemExit(f"the benchmark catalog changed: charge {CHANGED_CHARGE} is not per_unit")
    change = {"meter": charge["meter"], "from": charge["unit_price"], "to": CANDIDATE_PRICE}
    charge["unit_price"] = CANDIDATE_PRICE
    path.write_text(yaml.safe_dump(document))
    return change


def _backtest_phase(home: str, candidate: str, first: str, last: str, out) -> None:
    """`meterbook backtest` as a user runs it, in a subprocess of this fresh process: its
    CPU and peak RSS are this process's children's (dbt runs inside the command)."""
    started_at = time.time()
    start = time.perf_counter()
    command = [str(METERBOOK), "--home", home, "backtest", "--catalog", candidate]
    proc = subprocess.run(
        [*command, "--from", first, "--to", last, "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - start
    ended_at = time.time()
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"meterbook backtest exited {proc.returncode}")
    results = json.loads(proc.stdout)
    changed = [i for i in results["invoices"] if Decimal(i["difference"]) != 0]
    out.put(
        {
            "wall_s": wall,
            "cpu_s": kids.ru_utime + kids.ru_stime,
            "peak_rss_mib": kids.ru_maxrss / 1024,
            "invoices": len(results["invoices"]),
            "invoices_changed": len(changed),
            "currency_totals": results["currency_totals"],
            "split": _split(Path(home), started_at, ended_at),
        }
    )


def _split(home: Path, started_at: float, ended_at: float) -> dict[str, float]:
    """Where the backtest's wall time went, from the last price_backtest run's event log: the
    op's own messages (replay.py, run.py) mark the boundaries."""
    from dagster import DagsterEventType, DagsterInstance, RunsFilter  # noqa: PLC0415

    from orchestration.workspace import Workspace  # noqa: PLC0415

    os.environ["DAGSTER_HOME"] = str(Workspace(home).dagster_home)
    with DagsterInstance.get() as instance:
        run = instance.get_runs(filters=RunsFilter(job_name="price_backtest"), limit=1)[0]
        records = instance.all_logs(run.run_id)
    marks = [("start", started_at)]
    for record in records:
        kind = record.dagster_event.event_type if record.dagster_event else None
        if kind == DagsterEventType.RUN_START:
            marks.append(("run_start", record.timestamp))
        elif kind == DagsterEventType.STEP_START:
            marks.append(("step_start", record.timestamp))
        elif kind in (DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE):
            marks.append(("step_end", record.timestamp))
        elif kind in (DagsterEventType.RUN_SUCCESS, DagsterEventType.RUN_FAILURE):
            marks.append(("run_end", record.timestamp))
        elif kind is None and record.user_message:
            marks.append((record.user_message, record.timestamp))
    marks.append(("exit", ended_at))
    return _phases(marks)


def _phases(marks: list[tuple[str, float]]) -> dict[str, float]:
    """Each span between two marks, named for what ran in it, in order."""
    spans, side = {}, "baseline"
    for (mark, at), (following, then) in zip(marks, marks[1:], strict=False):
        if mark.startswith("baseline reproduces"):
            side = "candidate"
        name = _span_name(mark, following, side)
        spans[name] = round(spans.get(name, 0.0) + then - at, 1)
    return spans


SPAN_NAMES = {
    "start": "process start, imports, definitions",
    "run_start": "run start -> op start",
    "step_start": "catalogs, warehouse copies, billed invoices read",
    "baseline: re-rating": "baseline: catalog tables + fates build",
    "baseline reproduces": "candidate: copy swapped in, catalog tables + fates build",
    "step_end": "op end -> run end",
    "run_end": "run end -> exit (results read, JSON printed)",
}


def _span_name(mark: str, following: str, side: str) -> str:
    """The span from `mark` to `following`: a month's rating (which side, and what else ran
    before the next mark), or one of SPAN_NAMES."""
    if not mark.startswith("rating "):
        return next((n for m, n in SPAN_NAMES.items() if mark.startswith(m)), mark)
    name = f"{side} {mark.split()[1]}: windows + dbt billing + drafts read"
    if following.startswith("baseline reproduces"):
        return name + " (+ compare with billed)"
    if following == "step_end":
        return name + " (+ comparison, results files)"
    return name


def run(customers: int, n: int, work: Path, backtests: int) -> dict:
    os.environ["METERBOOK_NOW"] = NOW.isoformat()  # 2026-11-06: August to October closable
    home = workspace(work, "home", customers)
    report = {"customers": customers, "events_per_month": n, "months": list(MONTHS)}
    closes, finalizes = {}, {}
    for month in MONTHS:
        events = month_file(work, month, n, customers)
        # a hard link, not a symlink: the ingest ignores links that point outside landing/
        os.link(events, home / "landing" / "events" / events.name)
        closes[month] = run_phase(_job_phase, str(home), "month_end_close", month)
        print(f"close {month}: {closes[month]['wall_s']:.1f} s", flush=True)
        if month in FINALIZED:
            os.environ["METERBOOK_PDF"] = "off"  # 10,000 PDFs are not what this measures
            try:
                finalizes[month] = run_phase(_job_phase, str(home), "finalize_invoices", month)
            finally:
                del os.environ["METERBOOK_PDF"]
            print(f"finalize {month}: {finalizes[month]['wall_s']:.1f} s", flush=True)
    report["closes"], report["finalizes"] = closes, finalizes
    candidate = work / "candidate-catalog"
    report["candidate_change"] = write_candidate(home / "catalog", candidate)
    runs = []
    for _ in range(max(backtests, 1)):
        runs.append(run_phase(_backtest_phase, str(home), str(candidate), MONTHS[0], MONTHS[-1]))
        print(f"backtest: {runs[-1]['wall_s']:.1f} s", flush=True)
        if not runs[-1]["invoices_changed"]:
            raise SystemExit("the backtest changed no invoice: the candidate's price did nothing")
    report["backtests"] = runs
    report["closes_wall_s"] = sum(f["wall_s"] for f in closes.values())
    report["closes_cpu_s"] = sum(f["cpu_s"] for f in closes.values())
    report["ratio_wall"] = [b["wall_s"] / report["closes_wall_s"] for b in runs]
    report["ratio_cpu"] = [b["cpu_s"] / report["closes_cpu_s"] for b in runs]
    return report


def _row(name: str, f: dict) -> str:
    return f"{name:<44}{f['wall_s']:>9.1f}{f['cpu_s']:>9.1f}{f['peak_rss_mib']:>10,.0f}"


def print_report(r: dict) -> None:
    print(
        f"\n{len(r['months'])} months x {r['events_per_month']:,} events, "
        f"{r['customers']:,} customers, 20 charges"
    )
    print(f"{'step':<44}{'wall s':>9}{'cpu s':>9}{'peak MiB':>10}")
    for month, f in r["closes"].items():
        print(_row(f"close {month} (month_end_close)", f))
    closes = r["closes"].values()
    total = {
        "wall_s": r["closes_wall_s"],
        "cpu_s": r["closes_cpu_s"],
        "peak_rss_mib": max(f["peak_rss_mib"] for f in closes),
    }
    print(_row("the three closes (sum; peak: max)", total))
    for month, f in r["finalizes"].items():
        print(_row(f"finalize {month} (no PDFs; not in the sum)", f))
    change = r["candidate_change"]
    for i, b in enumerate(r["backtests"], start=1):
        label = "backtest" if len(r["backtests"]) == 1 else f"backtest, run {i}"
        print(_row(f"{label} ({r['months'][0]}..{r['months'][-1]})", b))
    for i, b in enumerate(r["backtests"]):
        print(
            f"backtest / sum of closes{'' if len(r['backtests']) == 1 else f' (run {i + 1})'}: "
            f"wall {r['ratio_wall'][i]:.2f}x, cpu {r['ratio_cpu'][i]:.2f}x (target: <= 1.0); "
            f"{b['invoices_changed']:,} of {b['invoices']:,} invoices changed "
            f"({change['meter']} unit price {change['from']} -> {change['to']})"
        )
    for i, b in enumerate(r["backtests"], start=1):
        print(f"where backtest run {i}'s wall time went (s):")
        for name, seconds in b["split"].items():
            print(f"  {name:<70}{seconds:>7.1f}")
    print(json.dumps(r))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=CUSTOMERS)
    parser.add_argument("--events-per-month", type=int, default=300_000)
    parser.add_argument("--backtests", type=int, default=1, help="backtest runs, in turn")
    parser.add_argument("--keep", type=Path, default=None, help="work here and keep it")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-backtest-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        print_report(run(args.customers, args.events_per_month, work, args.backtests))
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
