"""Invoice documents at scale: HTML, charts and PDFs of N finalized invoices.

Run:  .venv/bin/python benchmarks/bench_documents.py [--invoices 1000] [--meters 2] [--lines 12]

N synthetic finalized invoices (the SPEC 5 shape `invoices_with_ledger` returns, built with the
helpers of tests/close/close_fixtures.py), each with `--lines` lines over `--meters` usage
meters (a daily chart each) plus a fee, their issue moments in the ledger and 31 days of
daily usage per customer and meter in a DuckDB file. Phases, each timed on its own:

- charts: `invoice_charts` for every invoice (matplotlib, in this process; at most
          MAX_CHARTS per invoice, for the meters billing the most);
- html:   `render_documents(pdf=False)`: every HTML file, charts included (html = this - charts);
- pdf:    `render_documents()` again: the PDFs missing from the run before, printed by
          WeasyPrint in a pool of one process per core (what the next close does).
Figures are printed per 1,000 invoices, with a straight extrapolation to 10,000 (the
benchmark workspace's month). The benchmark workspace has 20 charges per plan: `--meters 20`.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "close"))

from close_fixtures import invoice, line  # noqa: E402
from pypdf import PdfReader  # noqa: E402

from orchestration.billing.documents import DailyUsage, invoice_charts, render_documents  # noqa: E402
from orchestration.billing.documents.chart import MAX_CHARTS  # noqa: E402
from orchestration.catalog.models import Catalog  # noqa: E402
from orchestration.defs.dbt.project import ensure_manifest  # noqa: E402
from orchestration.sql import connect  # noqa: E402
from orchestration.warehouse.ledger import ensure_ledger_schema  # noqa: E402

MONTH = "2026-10"
FINALIZED_AT = datetime(2026, 11, 4, 9, 30, tzinfo=UTC)


def build_catalog(invoices: int, meters: int) -> Catalog:
    codes = [f"m{i:02d}" for i in range(meters)]
    return Catalog.model_validate(
        {
            "settings": {
                "seller": {
                    "name": "Bench Seller Ltd",
                    "address": ["1 Main Street", "Dublin D01"],
                    "tax_id": "IE1234567X",
                    "email": "billing@bench.example",
                }
            },
            "meters": [
                {
                    "code": code,
                    "name": f"Meter {code}",
                    "event_name": f"e.{code}",
                    "aggregation": "sum",
                    "expression": "v",
                    "group_by": ["model"],
                    **({"unit": {"divide_by": "1000"}} if i % 2 else {}),
                }
                for i, code in enumerate(codes)
            ],
            "customers": [
                {
                    "id": f"c{i:05d}",
                    "name": f"Customer {i}",
                    "address": [f"{i} Long Road", "Leeds"],
                    "timezone": "Europe/London",
                    "tax_rate": "0.2",
                    "collection_method": "send_invoice",
                }
                for i in range(invoices)
            ],
        }
    )


def build_invoices(invoices: int, meters: int, lines: int) -> list[dict]:
    built = []
    for i in range(invoices):
        usage = [
            line(
                "usage",
                Decimal(k + 1) + Decimal(i % 100) / 100,
                meter=f"m{k % meters:02d}",
                group={"model": f"g{k}"},
                quantity=Decimal("151.961627499997") * (k + 1),
            )
            for k in range(lines - 1)
        ]
        fee = line("fixed_fee", "49.00", fee_code="platform", quantity=1)
        doc = invoice(f"c{i:05d}", f"s{i:05d}", [*usage, fee], tax_rate="0.2")
        doc.update(number=f"MB-2026-{i + 1:06d}", status="finalized")
        built.append(doc)
    return built


def build_warehouse(path: Path, invoices: list[dict], meters: int):
    con = connect(path)
    con.execute("CREATE SCHEMA marts")
    con.execute(
        "CREATE TABLE marts.fct_daily_meter_usage (usage_date DATE, billing_customer_id VARCHAR,"
        " meter_code VARCHAR, group_key JSON, event_count BIGINT, daily_quantity DECIMAL(38, 12))"
    )
    con.execute(
        """
        INSERT INTO marts.fct_daily_meter_usage
        SELECT DATE '2026-10-01' + d::INTEGER, 'c' || lpad(i::VARCHAR, 5, '0'),
               'm' || lpad(m::VARCHAR, 2, '0'), NULL, 1,
               ((i * 7 + d * 13 + m * 3) % 97 * 1000)::DECIMAL(38, 12)
        FROM range(?) t(i), range(31) u(d), range(?) v(m)
        """,
        [len(invoices), meters],
    )
    ensure_ledger_schema(con)
    con.executemany(
        "INSERT INTO meterbook_ledger.invoices VALUES"
        " (?, ?, ?, ?, ?, 'USD', 2, ?, ?, 0, 0, 0, 0, 0, 0, ?, '{}')",
        [
            [
                inv["invoice_id"],
                inv["number"],
                MONTH,
                inv["customer_id"],
                inv["subscription_id"],
                inv["period_start"],
                inv["period_end"],
                FINALIZED_AT,
            ]
            for inv in invoices
        ],
    )
    return con


def report(label: str, seconds: float, invoices: int) -> None:
    per_1000 = seconds / invoices * 1000
    print(
        f"  {label:<34} {seconds:8.2f} s   {per_1000:7.2f} s per 1,000"
        f"   ~{per_1000 * 10:7.0f} s for 10,000",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invoices", type=int, default=1_000)
    parser.add_argument("--meters", type=int, default=2, help="usage meters (charts) per invoice")
    parser.add_argument("--lines", type=int, default=12, help="lines per invoice, fee included")
    args = parser.parse_args()
    ensure_manifest()
    catalog = build_catalog(args.invoices, args.meters)
    document = {"period": MONTH, "invoices": build_invoices(args.invoices, args.meters, args.lines)}
    print(
        f"documents of {args.invoices} finalized invoices, {args.lines} lines and "
        f"{args.meters} usage meters each (at most {MAX_CHARTS} charts), {os.cpu_count()} cores"
    )
    with tempfile.TemporaryDirectory(prefix="meterbook-bench-documents-") as work:
        con = build_warehouse(Path(work) / "warehouse.duckdb", document["invoices"], args.meters)
        out = Path(work) / "documents"

        started = time.perf_counter()
        usage = DailyUsage.load(con, document["invoices"])
        charts = sum(len(invoice_charts(usage, catalog, inv)) for inv in document["invoices"])
        chart_seconds = time.perf_counter() - started

        started = time.perf_counter()
        html = render_documents(con, catalog, MONTH, out, document=document, pdf=False)
        html_seconds = time.perf_counter() - started

        started = time.perf_counter()
        printed = render_documents(con, catalog, MONTH, out, document=document)
        pdf_seconds = time.perf_counter() - started
        con.close()

        pdfs = [p for p in printed if p.suffix == ".pdf"]
        sample = pdfs[:: max(1, len(pdfs) // 50)]
        longer = sum(1 for p in sample if len(PdfReader(p).pages) > 1)
        size = sum(p.stat().st_size for p in pdfs) / max(1, len(pdfs))

    report(f"charts ({charts})", chart_seconds, args.invoices)
    report("html without charts", html_seconds - chart_seconds, args.invoices)
    report("html with charts (written)", html_seconds, args.invoices)
    report(f"pdf ({printed.counts.pdf_completed} printed)", pdf_seconds, args.invoices)
    report("documents in all", html_seconds + pdf_seconds, args.invoices)
    print(f"  {html.counts.summary()}; then {printed.counts.summary()}")
    print(
        f"  PDFs of more than one page: {longer} of {len(sample)} sampled; {size / 1024:.0f} KiB each"
    )


if __name__ == "__main__":
    main()
