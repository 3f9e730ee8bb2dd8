"""The whole usage pipeline at scale: ingest + metering (+ rating), against one bare DuckDB query.

Run:  .venv/bin/python benchmarks/bench_pipeline.py --events 1000000

Events come from bench_ingest.generate_events (10,000 customers, 20 event names, 2%
duplicates, October 2026). The catalog has one meter per event name (half `count`, half `sum`
of input + output tokens) and one subscription per customer on a plan with 20 charges over
every charge model, so the close rates 10,000 customers x 20 charges. Each phase runs in a fresh
process (its own peak RSS):

- ingest:  run_ingest (parse, fates at parse level, incremental key ranking);
- meter:   the dbt usage models (fates, metered events) and the daily usage of every day;
- rate:    the close calendar and the dbt billing models for 2026-10 (quantities per segment,
           rating, invoices);
- bare:    read_json -> row_number() dedupe on (customer_id, event_id) -> count per
           customer x event name x day, the same logical work as ingest + meter;
- overhead: ingest + meter on 1,000 events (the same phases, same catalog: their fixed cost),
           and the real `month_end_close` Dagster job (ingest, dbt, rating, documents,
           checks) on 1,000 events: the fixed cost of a whole close.

With `--whole`, it measures instead what a user runs, against two bare queries in the same run:

- whole close: the real `month_end_close` Dagster job on a fresh workspace with the file in
  landing/ (ingest, fates, metering, rating, invoices, documents, checks), its CPU counted
  with the dbt processes it starts;
- bare (a): read_json -> dedupe -> aggregate, nothing stored (the `bare` query above);
- bare (b): the same, after `create table ... as select * from read_json(...)` stores every
  event in an on-disk DuckDB file, with DuckDB's inferred column types;
- with `--documents`: the month finalized without PDFs (numbering, ledger, HTML documents),
  then finalized again, which numbers nothing and prints every PDF (WeasyPrint): the PDFs'
  cost against the whole close;
- with `--late N`: the month finalized (without PDFs), then a late file of N events for it lands and the
  next month's close runs (re-rating the finalized month, billing the difference as
  adjustments): its cost against the whole close.

With `--repeat K` the whole sequence runs K times, each in a fresh workspace, and every phase
reports its fastest run, with the wall time of every run beside it: on a shared machine the
same code varies by 20-30% between runs, and the fastest run is the one least disturbed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_ingest import (  # noqa: E402
    CUSTOMERS,
    DEDUPE_AND_COUNT,
    EVENT_NAMES,
    NOW,
    _bare_phase,
    _figures,
    _ingest_phase,
    generate_events,
    run_phase,
)

MONTH = "2026-10"
# set by --wallets for every phase's process: a monthly promotional allowance with rollover on
# the plan, a credit price on its first per_unit charge, a paid pack for every tenth customer
WALLETS_ENV = "METERBOOK_BENCH_WALLETS"
MODELS = ("per_unit", "package", "graduated", "volume", "percentage")
TIERS = [
    {"up_to": "1000", "unit_price": "0.002", "flat_fee": "1"},
    {"up_to": "50000", "unit_price": "0.001"},
    {"up_to": None, "unit_price": "0.0005"},
]
PRICING = {
    "per_unit": {"unit_price": "0.01"},
    "package": {"package_size": "100", "package_price": "0.50"},
    "graduated": {"tiers": TIERS},
    "volume": {"tiers": TIERS},
    "percentage": {"rate": "2.5"},
}


def catalog_document(customers: int = CUSTOMERS, names: int = EVENT_NAMES) -> dict:
    meters = [
        {"code": f"m{i:02d}", "event_name": f"event.{i}", "aggregation": "count"}
        if i % 2
        else {
            "code": f"m{i:02d}",
            "event_name": f"event.{i}",
            "aggregation": "sum",
            "expression": "input_tokens + output_tokens",
            "unit": {"divide_by": 1000, "rounding": "up"},
        }
        for i in range(names)
    ]
    charges = [
        {"meter": m["code"], "model": MODELS[i % len(MODELS)], **PRICING[MODELS[i % len(MODELS)]]}
        for i, m in enumerate(meters)
    ]
    version = {"version": 1, "effective_from": "2026-01-01", "charges": charges}
    version["fixed_fees"] = [{"code": "platform", "amount": "49.00"}]
    grants = []
    if os.environ.get(WALLETS_ENV):  # --wallets: every customer has credits to draw
        version["credit_grants"] = [
            {"code": "monthly", "kind": "promotional", "amount": "20.00", "every": "period",
             "rollover": {"max": "5.00"}}
        ]  # fmt: skip
        charges[0]["credit_price"] = "0.005"  # a per_unit charge: credit-priced units
        grants = [
            {"id": f"pack_{i}", "customer_id": f"cust_{i}", "kind": "paid", "amount": "100.00",
             "granted_on": "2026-10-01"}
            for i in range(0, customers, 10)
        ]  # fmt: skip
    return {
        "meters": meters,
        "plans": [{"code": "usage", "currency": "USD", "versions": [version]}],
        "customers": [{"id": f"cust_{i}", "tax_rate": "0.2"} for i in range(customers)],
        "subscriptions": [
            {
                "id": f"sub_{i}",
                "customer_id": f"cust_{i}",
                "plan": "usage",
                "start_date": "2026-01-01",
            }
            for i in range(customers)
        ],
        "credit_grants": grants,
    }


def write_catalog(home: Path) -> None:
    import yaml  # noqa: PLC0415

    (home / "catalog").mkdir(parents=True, exist_ok=True)
    (home / "catalog" / "catalog.yaml").write_text(yaml.safe_dump(catalog_document()))


def _meter_phase(home: str, out) -> None:
    from orchestration.catalog import load_catalog  # noqa: PLC0415
    from orchestration.catalog.tables import write_catalog_tables  # noqa: PLC0415
    from orchestration.defs.dbt.runner import dbt_args, run_dbt  # noqa: PLC0415
    from orchestration.sql import connect  # noqa: PLC0415

    start_wall, start_cpu = time.perf_counter(), time.process_time()
    warehouse = Path(home) / "warehouse.duckdb"
    con = connect(warehouse)
    write_catalog_tables(con, load_catalog(Path(home) / "catalog"))
    con.close()
    target = Path(home) / "dbt-target"
    run_dbt(warehouse, dbt_args("build", "tag:usage"), target_path=target)
    con = connect(warehouse, read_only=True)
    billable = con.execute(
        "SELECT count(*) FROM marts.fct_event_fates WHERE fate = 'billable'"
    ).fetchone()[0]
    con.close()
    out.put(_figures(start_wall, start_cpu, rows=billable))


def _rate_phase(home: str, out) -> None:
    from orchestration.billing.windows import write_billing_windows  # noqa: PLC0415
    from orchestration.catalog import load_catalog  # noqa: PLC0415
    from orchestration.defs.dbt.runner import dbt_args, run_dbt  # noqa: PLC0415
    from orchestration.sql import connect  # noqa: PLC0415

    start_wall, start_cpu = time.perf_counter(), time.process_time()
    warehouse = Path(home) / "warehouse.duckdb"
    con = connect(warehouse)
    write_billing_windows(con, load_catalog(Path(home) / "catalog"), MONTH)
    con.close()
    run_dbt(
        warehouse,
        dbt_args("build", "tag:billing"),
        {"close_month": MONTH},
        target_path=Path(home) / "dbt-target",
    )
    con = connect(warehouse, read_only=True)
    lines = con.execute(
        "SELECT count(*) FROM marts.fct_invoice_lines WHERE close_month = ?", [MONTH]
    ).fetchone()[0]
    con.close()
    out.put(_figures(start_wall, start_cpu, rows=lines))


def _dagster_phase(home: str, out) -> None:
    from orchestration.pipeline import run_job  # noqa: PLC0415
    from orchestration.workspace import Workspace  # noqa: PLC0415

    start_wall, start_cpu = time.perf_counter(), time.process_time()
    outcome = run_job(Workspace(Path(home)), "month_end_close", MONTH)
    if not outcome.success:
        raise SystemExit(f"month_end_close failed: {outcome.error}")
    out.put(_figures(start_wall, start_cpu, rows=0))


def _job_phase(home: str, job: str, partition: str, out) -> None:
    """A Dagster job as the CLI runs it; CPU and peak RSS include the dbt processes."""
    import resource  # noqa: PLC0415

    from orchestration.pipeline import run_job  # noqa: PLC0415
    from orchestration.workspace import Workspace  # noqa: PLC0415

    start_wall = time.perf_counter()
    outcome = run_job(Workspace(Path(home)), job, partition)
    if not outcome.success:
        raise SystemExit(f"{job} {partition} failed: {outcome.error}")
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    out.put(
        {
            "wall_s": time.perf_counter() - start_wall,
            "cpu_s": me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime,
            "peak_rss_mib": max(me.ru_maxrss, kids.ru_maxrss) / 1024,
            "rows": 0,
            "steps": _step_seconds(outcome.run_id),
        }
    )


def _step_seconds(run_id: str) -> dict[str, float]:
    """Each step's wall time in the run, from the workspace's Dagster instance."""
    from dagster import DagsterInstance  # noqa: PLC0415

    with DagsterInstance.get() as instance:
        stats = instance.get_run_step_stats(run_id)
    return {s.step_key: round(s.end_time - s.start_time, 1) for s in stats if s.end_time}


def _bare_stored_phase(events_file: str, work: str, memory_limit, out) -> None:
    """Bare query (b): every event stored in an on-disk table first, then deduped and
    aggregated from it."""
    from orchestration.sql import connect  # noqa: PLC0415

    start_wall, start_cpu = time.perf_counter(), time.process_time()
    path = Path(work) / "bare-stored.duckdb"
    path.unlink(missing_ok=True)
    con = connect(path)
    if memory_limit:
        con.execute(f"SET memory_limit = '{memory_limit}'")
    con.execute(
        f"CREATE TABLE events AS SELECT * FROM read_json('{events_file}', "
        "format = 'newline_delimited')"
    )
    rows = con.execute(f"WITH {DEDUPE_AND_COUNT}").fetchone()[0]
    con.close()
    path.unlink(missing_ok=True)
    out.put(_figures(start_wall, start_cpu, rows=rows))


def run_whole(
    events: int, work: Path, memory_limit: str | None, late: int, documents: bool = False
) -> dict:
    """The whole close against bare queries (a) and (b) on the same file, in one run."""
    os.environ["METERBOOK_NOW"] = NOW.isoformat()
    big = work / f"events-{events}.jsonl"
    if not big.exists():
        generate_events(big, events)
    home = _workspace(work, "whole")
    (home / "landing" / "events").mkdir(parents=True)
    # a hard link, not a symlink: the ingest ignores links that point outside landing/
    os.link(big, home / "landing" / "events" / "events.jsonl")
    report = {
        "events": events,
        "whole_close": run_phase(_job_phase, str(home), "month_end_close", MONTH),
    }
    report["bare_a"] = run_phase(_bare_phase, str(big), memory_limit, None)
    report["bare_b"] = run_phase(_bare_stored_phase, str(big), str(work), memory_limit)
    if documents:
        report["documents"] = _documents(home)
    elif late:
        report["late"] = _late_file(home, work, late)
    return report


def _documents(home: Path) -> dict:
    """Finalize the month without PDFs (numbering, ledger, HTML documents), then run the
    finalize again: it numbers nothing and prints every PDF the first run left missing."""
    os.environ["METERBOOK_NOW"] = "2026-12-02T00:00:00+00:00"  # November is over
    os.environ["METERBOOK_PDF"] = "off"
    try:
        html = run_phase(_job_phase, str(home), "finalize_invoices", MONTH)
    finally:
        del os.environ["METERBOOK_PDF"]
    pdfs = run_phase(_job_phase, str(home), "finalize_invoices", MONTH)
    return {"finalize_html_only": html, "pdfs_completed_by_finalize": pdfs}


def _late_file(home: Path, work: Path, n: int) -> dict:
    """Finalize the month, land a late file of n events for it, close the next month."""
    os.environ["METERBOOK_NOW"] = "2026-12-02T00:00:00+00:00"  # November is over
    # 10,000 PDFs take half an hour (benchmarks/bench_documents.py) and are not what this
    # measures: finalize writes HTML only, and a later run would complete the PDFs
    os.environ["METERBOOK_PDF"] = "off"
    try:
        report = {"finalize": run_phase(_job_phase, str(home), "finalize_invoices", MONTH)}
    finally:
        del os.environ["METERBOOK_PDF"]
    late = work / f"late-{n}.jsonl"
    generate_events(late, n)
    text = late.read_text().replace('"evt_', '"late_evt_')  # new keys, same month and shape
    (home / "landing" / "events" / "late.jsonl").write_text(text)
    report["next_close_with_rerate"] = run_phase(
        _job_phase, str(home), "month_end_close", "2026-11"
    )
    return report


def print_whole(r: dict) -> None:
    whole, a, b = r["whole_close"], r["bare_a"], r["bare_b"]
    print(f"\n{r['events']:,} events, {CUSTOMERS:,} customers, {EVENT_NAMES} charges")
    print(f"{'step':<44}{'wall s':>9}{'cpu s':>9}{'peak MiB':>10}")
    rows = [
        ("whole close (month_end_close)", whole),
        ("bare (a) read_json, nothing stored", a),
        ("bare (b) stored in a table first", b),
    ]
    for step, f in (r.get("late") or {}).items():
        rows.append((f"late file: {step}", f))
    for step, f in (r.get("documents") or {}).items():
        rows.append((f"documents: {step}", f))
    for name, f in rows:
        print(f"{name:<44}{f['wall_s']:>9.1f}{f['cpu_s']:>9.1f}{f['peak_rss_mib']:>10,.0f}")
    print(
        f"whole close / (a): wall {whole['wall_s'] / a['wall_s']:.2f}x; "
        f"/ (b): wall {whole['wall_s'] / b['wall_s']:.2f}x"
    )
    if r.get("late"):
        _print_late(r["late"], whole)
    if r.get("documents"):
        pdfs = r["documents"]["pdfs_completed_by_finalize"]["wall_s"]
        print(f"PDFs of the month / whole close: wall {pdfs / whole['wall_s']:.2f}x")
    print(json.dumps(r))


# the steps of a close that exist because of the late file: the finalized month re-rated,
# and the adjustment lines written with this month's windows
LATE_STEPS = ("rerated_finalized_months", "billing_windows")


def _print_late(late: dict, whole: dict) -> None:
    rerate = late["next_close_with_rerate"]
    print(
        f"late file re-rate + next close / whole close: wall "
        f"{rerate['wall_s'] / whole['wall_s']:.2f}, cpu {rerate['cpu_s'] / whole['cpu_s']:.2f}"
    )
    steps = rerate.get("steps", {})
    late_cost = sum(steps.get(step, 0.0) for step in LATE_STEPS)
    print(
        "  its steps for the late file ("
        + ", ".join(f"{s} {steps.get(s, 0):.1f} s" for s in LATE_STEPS)
        + f"): {late_cost:.1f} s = {late_cost / whole['wall_s']:.1%} of the whole close"
    )
    print(
        "  slowest steps of that close: "
        + ", ".join(f"{k} {v:.1f} s" for k, v in sorted(steps.items(), key=lambda kv: -kv[1])[:6])
    )


def _workspace(work: Path, name: str) -> Path:
    home = work / name
    shutil.rmtree(home, ignore_errors=True)
    write_catalog(home)
    return home


def run(events: int, work: Path, memory_limit: str | None, repeat: int = 1) -> dict:
    os.environ["METERBOOK_NOW"] = NOW.isoformat()
    if memory_limit:
        os.environ["METERBOOK_MEMORY_LIMIT"] = memory_limit
    big, small = work / f"events-{events}.jsonl", work / "events-1000.jsonl"
    for path, n in ((big, events), (small, 1000)):
        if not path.exists():
            generate_events(path, n)
    runs = [_run_once(work, big, small, memory_limit) for _ in range(max(repeat, 1))]
    report = {"events": events, "repeat": len(runs)}
    for phase in runs[0]:
        report[phase] = fastest([r[phase] for r in runs])
    return report


def _run_once(work: Path, big: Path, small: Path, memory_limit: str | None) -> dict:
    """Every phase once; ingest, meter and rate build on each other in a fresh workspace."""
    home = _workspace(work, "home")
    report = {"ingest": run_phase(_ingest_phase, str(big), str(home), memory_limit, None)}
    report["meter"] = run_phase(_meter_phase, str(home))
    report["rate"] = run_phase(_rate_phase, str(home))
    report["bare_query"] = run_phase(_bare_phase, str(big), memory_limit, None)
    report["ingest_meter_1000"] = _ingest_meter(work, small, memory_limit)
    small_home = _workspace(work, "home1k")
    (small_home / "landing" / "events").mkdir(parents=True)
    shutil.copy(small, small_home / "landing" / "events" / "events.jsonl")
    report["dagster_close_1000"] = run_phase(_dagster_phase, str(small_home))
    return report


def _ingest_meter(work: Path, events_file: Path, memory_limit: str | None) -> dict:
    """The ingest and meter phases on `events_file`, as one figure (their sum; peak: max)."""
    home = _workspace(work, "home1k-usage")
    ingest = run_phase(_ingest_phase, str(events_file), str(home), memory_limit, None)
    meter = run_phase(_meter_phase, str(home))
    return {
        "wall_s": ingest["wall_s"] + meter["wall_s"],
        "cpu_s": ingest["cpu_s"] + meter["cpu_s"],
        "peak_rss_mib": max(ingest["peak_rss_mib"], meter["peak_rss_mib"]),
        "rows": ingest["rows"],
    }


def fastest(runs: list[dict]) -> dict:
    """The figures of the run with the least wall time, and every run's wall time."""
    best = min(runs, key=lambda f: f["wall_s"])
    return {**best, "wall_s_runs": [round(f["wall_s"], 1) for f in runs]}


def print_report(r: dict) -> None:
    n, ingest, meter, rate, bare = r["events"], r["ingest"], r["meter"], r["rate"], r["bare_query"]
    ours_wall, ours_cpu = ingest["wall_s"] + meter["wall_s"], ingest["cpu_s"] + meter["cpu_s"]
    rows = [
        ("ingest", ingest, f"{n / ingest['wall_s']:,.0f} events/s"),
        ("meter (dbt usage)", meter, f"{n / meter['wall_s']:,.0f} events/s"),
        (
            "rate (dbt billing)",
            rate,
            f"{rate['rows']:,} lines, {rate['rows'] / rate['wall_s']:,.0f} lines/s",
        ),
        ("bare DuckDB query", bare, f"{n / bare['wall_s']:,.0f} events/s"),
        ("ingest + meter, 1,000 events", r["ingest_meter_1000"], "their fixed overhead"),
        ("Dagster close, 1,000 events", r["dagster_close_1000"], "fixed overhead of a close"),
    ]
    print(f"\n{n:,} events, {CUSTOMERS:,} customers, {EVENT_NAMES} event names, 2% duplicates")
    print(f"{'phase':<30}{'wall s':>9}{'cpu s':>9}{'peak MiB':>10}  throughput")
    for name, f, note in rows:
        print(f"{name:<30}{f['wall_s']:>9.1f}{f['cpu_s']:>9.1f}{f['peak_rss_mib']:>10,.0f}  {note}")
    if r["repeat"] > 1:
        print(f"fastest of {r['repeat']} runs; wall s of each run:")
        for name, f, _ in rows:
            print(f"  {name:<30}{', '.join(f'{w:.1f}' for w in f['wall_s_runs'])}")
    print(
        f"ingest + meter vs bare query: wall {ours_wall / bare['wall_s']:.2f}x, "
        f"cpu {ours_cpu / bare['cpu_s']:.2f}x"
    )
    print(json.dumps(r))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--workdir", type=Path, default=None, help="kept when given")
    parser.add_argument("--memory-limit", default="4GB", help="DuckDB memory_limit")
    parser.add_argument("--repeat", type=int, default=1, help="runs; each phase's fastest is kept")
    parser.add_argument("--whole", action="store_true", help="the whole close vs bare (a), (b)")
    parser.add_argument(
        "--wallets", action="store_true", help="every customer has prepaid credits (SPEC 7)"
    )
    parser.add_argument("--late", type=int, default=0, help="with --whole: a late file of N")
    parser.add_argument(
        "--documents", action="store_true", help="with --whole: finalize, HTML then PDFs"
    )
    args = parser.parse_args()
    if args.documents and (args.late or not args.whole):
        parser.error("--documents goes with --whole and without --late")
    if args.wallets:
        os.environ[WALLETS_ENV] = "1"  # inherited by every phase's process
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        if args.whole:
            print_whole(run_whole(args.events, work, args.memory_limit, args.late, args.documents))
        else:
            print_report(run(args.events, work, args.memory_limit, args.repeat))
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
