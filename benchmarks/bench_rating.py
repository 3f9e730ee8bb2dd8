"""Rating at scale: 10,000 customers x 20 charges, one monthly close.

Run:  .venv/bin/python benchmarks/bench_rating.py [--customers 10000] [--charges 20]

Metering is replaced by the test stub of tests/rating/rating_harness.py (one quantity per
customer x meter), so the figures are those of rating alone: the catalog tables, the close
calendar (periods, segments, windows) and the dbt billing models through fct_invoices.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "rating"))

from rating_harness import USAGE_COLUMNS, RatingProject  # noqa: E402

from orchestration.billing.windows import write_billing_windows  # noqa: E402
from orchestration.catalog.models import Catalog  # noqa: E402
from orchestration.catalog.tables.billing import ddl, insert_rows, write_billing_tables  # noqa: E402

MONTH = "2026-10"
MODELS = ["per_unit", "package", "graduated", "volume", "percentage"]
TIERS = [
    {"up_to": "1000", "unit_price": "0.002", "flat_fee": "1"},
    {"up_to": "50000", "unit_price": "0.001", "flat_fee": "2"},
    {"up_to": None, "unit_price": "0.0005"},
]


def charge(meter: str, model: str) -> dict:
    pricing = {
        "per_unit": {"unit_price": "0.01"},
        "package": {"package_size": "100", "package_price": "0.50"},
        "graduated": {"tiers": TIERS},
        "volume": {"tiers": TIERS},
        "percentage": {"rate": "2.5"},
    }[model]
    return {"meter": meter, "model": model, "free_units": "10", **pricing}


def build_catalog(customers: int, charges: int) -> Catalog:
    meters = [f"m{i:02d}" for i in range(charges)]
    return Catalog.model_validate(
        {
            "meters": [
                {"code": m, "event_name": f"e.{m}", "aggregation": "sum", "expression": "v"}
                for m in meters
            ],
            "plans": [
                {
                    "code": "big",
                    "currency": "USD",
                    "versions": [
                        {
                            "version": 1,
                            "effective_from": "2026-01-01",
                            "fixed_fees": [{"code": "platform", "amount": "49"}],
                            "charges": [
                                charge(m, MODELS[i % len(MODELS)]) for i, m in enumerate(meters)
                            ],
                            "minimum_spend": "100",
                        }
                    ],
                }
            ],
            "customers": [
                {"id": f"c{i:05d}", "currency": "USD", "tax_rate": "0.2"} for i in range(customers)
            ],
            "subscriptions": [
                {
                    "id": f"s{i:05d}",
                    "customer_id": f"c{i:05d}",
                    "plan": "big",
                    "start_date": "2026-01-01" if i % 10 else "2026-10-10",
                }
                for i in range(customers)
            ],
        }
    )


def usage_rows(customers: int, charges: int) -> list[tuple]:
    rng = random.Random(20261001)
    at = datetime(2026, 10, 20, tzinfo=UTC)
    return [
        (f"c{c:05d}", f"m{m:02d}", None, at, Decimal(rng.randint(0, 200000)) / 100)
        for c in range(customers)
        for m in range(charges)
    ]


def timed(label: str, fn) -> float:
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    print(f"  {label:<44} {seconds:8.2f} s", flush=True)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--charges", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        project = RatingProject(Path(tmp))
        catalog = build_catalog(args.customers, args.charges)
        usage = usage_rows(args.customers, args.charges)
        print(f"rating {args.customers} customers x {args.charges} charges, close {MONTH}")
        with project.connect() as con:
            timed(
                "catalog tables (write_billing_tables)", lambda: write_billing_tables(con, catalog)
            )
            timed(
                "close calendar (write_billing_windows)",
                lambda: write_billing_windows(con, catalog, MONTH),
            )
            con.execute("CREATE SCHEMA IF NOT EXISTS test_inputs")
            con.execute(f"CREATE OR REPLACE TABLE {ddl('test_inputs.usage', USAGE_COLUMNS)}")
            insert_rows(con, "test_inputs.usage", USAGE_COLUMNS, usage)
        timed("dbt billing models, first run (incl. parse)", lambda: project.dbt(MONTH))
        rated = timed("dbt billing models, re-run", lambda: project.dbt(MONTH))
        with project.connect() as con:
            lines, invoices, amount = con.execute(
                "SELECT count(*), count(DISTINCT invoice_id), sum(amount) FROM marts.fct_invoice_lines"
            ).fetchone()
        print(
            f"  {lines} lines on {invoices} invoices ({lines / rated:,.0f} lines/s), total {amount}"
        )


if __name__ == "__main__":
    main()
