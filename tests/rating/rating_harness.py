"""Run the rating models on hand-written quantities, without ingest or metering.

`RatingProject` copies the billing models and macros of dbt_project into a temporary dbt
project and replaces metering's `int_meter_quantities_windowed` with a stub that sums the
rows of `test_inputs.usage` falling in each window (the same contract: one row per window x
charged meter x group, a row with group null and quantity 0 when nothing was used). Rating
is then exercised on exactly the quantities a test states.

`render_macros` renders the charge-model macros with plain Jinja, so property tests can run
thousands of quantities through the very SQL dbt uses, in one DuckDB query.
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import jinja2
import yaml

from orchestration.billing.invoice_json import invoices_document
from orchestration.billing.windows import write_billing_windows
from orchestration.catalog.loader import load_catalog
from orchestration.catalog.models import Catalog
from orchestration.catalog.tables.billing import ddl, insert_rows, write_billing_tables
from orchestration.defs.dbt.project import ensure_manifest
from orchestration.defs.dbt.runner import environment, partition_env
from orchestration.sql import connect
from orchestration.warehouse.ledger import ensure_ledger_schema
from orchestration.workspace import DBT_PROJECT_DIR

USAGE_COLUMNS = [
    ("customer_id", "VARCHAR"),
    ("meter_code", "VARCHAR"),
    ("group_key", "VARCHAR"),
    ("used_at", "TIMESTAMPTZ"),
    ("quantity", "DECIMAL(38, 12)"),
]
MACRO_PREFIXES = (
    "billing_", "charge_model_", "decimal", "dialect", "generate_schema_name", "meterbook_",
)  # fmt: skip

# the wallet models read metered events for the daily share of a grant valid part of a
# period; the harness has none (its usage is per window)
STUB_EVENTS = """
select cast(null as varchar) as billing_customer_id, cast(null as varchar) as meter_code,
       cast(null as json) as group_key, cast(null as timestamptz) as event_ts,
       cast(null as varchar) as aggregation, cast(null as decimal(38, 12)) as value
where false
"""

STUB_QUANTITIES = """
-- test stub of metering's model: sums test_inputs.usage per window x meter x group
with windows as (
    select * from meterbook_billing.meter_windows
    where {{ billing_in_close_month('close_month') }}
),
meters as (select distinct meter_code from meterbook_catalog.charges),
usage_rows as (select * from test_inputs.usage),
measured as (
    select w.close_month, w.window_id, w.billing_customer_id, u.meter_code,
           cast(u.group_key as json) as group_key,
           cast(sum(u.quantity) as decimal(38, 12)) as quantity,
           cast(count(*) as bigint) as event_count
    from windows w
    join usage_rows u
      on u.customer_id = w.billing_customer_id
     and u.used_at >= w.window_start and u.used_at < w.window_end
    group by all
),
empty as (
    select w.close_month, w.window_id, w.billing_customer_id, m.meter_code,
           cast(null as json) as group_key, cast(0 as decimal(38, 12)) as quantity,
           cast(0 as bigint) as event_count
    from windows w cross join meters m
    where not exists (select 1 from measured x
                      where x.window_id = w.window_id and x.meter_code = m.meter_code)
)
select * from measured union all select * from empty
"""


def catalog_from_text(folder: Path, text: str) -> Catalog:
    """A validated catalog from YAML text, through the real loader."""
    catalog_dir = folder / "catalog"
    catalog_dir.mkdir(parents=True, exist_ok=True)
    (catalog_dir / "catalog.yaml").write_text(text)
    return load_catalog(catalog_dir)


def use(customer: str, meter: str, at: str, quantity: str | int, group: dict | None = None):
    """One usage row: `quantity` of `meter` by `customer` at instant `at` (RFC 3339)."""
    instant = datetime.fromisoformat(at.replace("Z", "+00:00"))
    return (customer, meter, json.dumps(group) if group else None, instant, Decimal(str(quantity)))


def _billing_staging_files() -> list[Path]:
    """The staging models tagged billing (what the billing models read), by dbt's manifest,
    with their YAML; meter_windows is left out: the harness stubs metering."""
    nodes = json.loads(ensure_manifest().read_text())["nodes"].values()
    files = []
    for node in nodes:
        path = DBT_PROJECT_DIR / node.get("original_file_path", "")
        staging = path.is_relative_to(DBT_PROJECT_DIR / "models" / "staging")
        stubbed = node["name"] == "stg_billing__meter_windows"
        if (
            node["resource_type"] == "model"
            and "billing" in node["tags"]
            and staging
            and not stubbed
        ):
            files += [path, path.with_suffix(".yml")]
    return files


class RatingProject:
    """A throw-away dbt project with the billing models and a metering stub."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.project = folder / "dbt_project"
        self.warehouse = folder / "warehouse.duckdb"
        self._copy_project()

    def _copy_project(self) -> None:
        models = self.project / "models"
        for part in ("intermediate/billing", "marts/billing"):
            shutil.copytree(DBT_PROJECT_DIR / "models" / part, models / part)
        # the staging models the billing models read (the project's tag: billing), and the seed
        staging = DBT_PROJECT_DIR / "models" / "staging"
        for source in (*staging.glob("*/_*__sources.yml"), *_billing_staging_files()):
            copy = models / source.relative_to(DBT_PROJECT_DIR / "models")
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, copy)
        shutil.copytree(DBT_PROJECT_DIR / "seeds", self.project / "seeds")
        # unit-test fixtures (a link to the seed: copied as the file it points to)
        shutil.copytree(DBT_PROJECT_DIR / "tests" / "fixtures", self.project / "tests" / "fixtures")
        self._seeded = False
        (models / "intermediate" / "usage").mkdir(parents=True)
        (models / "intermediate" / "usage" / "int_meter_quantities_windowed.sql").write_text(
            STUB_QUANTITIES
        )
        (models / "intermediate" / "usage" / "int_events_metered.sql").write_text(STUB_EVENTS)
        (self.project / "macros").mkdir()
        for macro in (DBT_PROJECT_DIR / "macros").glob("*.sql"):
            if macro.name.startswith(MACRO_PREFIXES):
                shutil.copy(macro, self.project / "macros" / macro.name)
        config = yaml.safe_load((DBT_PROJECT_DIR / "dbt_project.yml").read_text())
        (self.project / "dbt_project.yml").write_text(yaml.safe_dump(config))
        shutil.copy(DBT_PROJECT_DIR / "profiles.yml", self.project / "profiles.yml")

    def connect(self) -> duckdb.DuckDBPyConnection:
        return connect(self.warehouse)

    def prepare(
        self, catalog: Catalog, month: str, usage: list[tuple] = (), adjustments: list[tuple] = ()
    ) -> None:
        """Catalog tables, the month's windows and the stated usage, as the pipeline would;
        `adjustments` are rows of meterbook_billing.adjustment_lines (late events)."""
        with self.connect() as con:
            ensure_ledger_schema(con)  # as the pipeline does before a build (wallets read it)
            write_billing_tables(con, catalog)
            write_billing_windows(con, catalog, month)
            con.execute(
                "DELETE FROM meterbook_billing.adjustment_lines WHERE close_month = ?", [month]
            )
            if adjustments:
                con.executemany(
                    "INSERT INTO meterbook_billing.adjustment_lines VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    adjustments,
                )
            con.execute("CREATE SCHEMA IF NOT EXISTS test_inputs")
            con.execute(f"CREATE OR REPLACE TABLE {ddl('test_inputs.usage', USAGE_COLUMNS)}")
            insert_rows(con, "test_inputs.usage", USAGE_COLUMNS, usage)

    def dbt(self, month: str, command: str = "run", *more: str) -> None:
        if command == "run" and not self._seeded:  # `build` seeds by itself
            self._seeded = True
            self.dbt(month, "seed")
        from dbt.cli.main import dbtRunner  # noqa: PLC0415 (slow import)

        args = [command, *more, "--quiet", "--project-dir", str(self.project)]
        args += ["--profiles-dir", str(self.project)]
        env = {"METERBOOK_WAREHOUSE": str(self.warehouse), **partition_env({"close_month": month})}
        with environment(env):
            result = dbtRunner().invoke(args)
        if not result.success:
            raise AssertionError(f"dbt {command} failed: {result.exception or result.result}")

    def close(self, catalog: Catalog, month: str, usage=(), adjustments=(), command="run") -> dict:
        """Prepare, run the models, and return the SPEC 5 document of the month."""
        self.prepare(catalog, month, usage, adjustments)
        self.dbt(month, command)
        with self.connect() as con:
            return invoices_document(con, month)


def render_macros() -> object:
    """The project's billing and charge-model macros as a Jinja module (plain Jinja only)."""
    text = "\n".join(
        path.read_text()
        for path in sorted((DBT_PROJECT_DIR / "macros").glob("*.sql"))
        if path.name.startswith(("billing_", "charge_model_", "decimal"))
    )
    return jinja2.Environment().from_string(text).module


def invoice(doc: dict, subscription_id: str) -> dict:
    found = [i for i in doc["invoices"] if i["subscription_id"] == subscription_id]
    assert len(found) == 1, f"{len(found)} invoices for {subscription_id}"
    return found[0]


def lines(inv: dict, kind: str, key: str | None = None) -> list[dict]:
    """The invoice's lines of `kind`, for one meter / fee code when `key` is given."""
    return [
        line
        for line in inv["lines"]
        if line["kind"] == kind and (key is None or key in (line["meter"], line["fee_code"]))
    ]


def total(inv: dict, kind: str, key: str | None = None) -> Decimal:
    return sum((Decimal(line["amount"]) for line in lines(inv, kind, key)), Decimal(0))
