"""The lake folder: Parquet files by which the DuckDB warehouse and Spark hand tables over.

With `settings.warehouse: spark` the usage models that read every event are built by Spark
(orchestration/defs/dbt/spark_stage.py). DuckDB stays the warehouse of record: it writes the
models' inputs here (`in/<schema>.<table>/`), Spark reads them and writes what it built
(`out/<model>/`), and DuckDB reads that back into the tables its own models (billing, the
fates' marts, entitlements) read. Parquet keeps every DECIMAL(38, 12) exact both ways.

With Spark, Spark's ingest also writes the raw events here (`raw_events/`, by run and event
day; ingest/spark_read.py): once every file on record was read that way, the raw events are
handed to Spark as a view of those folders rather than copied out of DuckDB.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from orchestration.catalog import Catalog
from orchestration.catalog.tables.dialects import dialect
from orchestration.catalog.tables.metering import SCHEMAS, metering_rows
from orchestration.sql import quote_literal
from orchestration.warehouse.models import model_exists, relation
from orchestration.warehouse.tables import table_exists

# what the Spark usage models read, as the DuckDB ingest and the close's windows step wrote it
# (properties as text: Spark has no JSON type)
RAW_INPUTS = {
    "meterbook_raw.raw_events": "read_seq, file_seq, path, line_no, event_id, customer_id, "
    "event_name, event_ts, CAST(properties AS VARCHAR) AS properties, source, parse_reason, "
    "ingested_at",
    "meterbook_raw.repeated_events": "read_seq, key_rank, payload_hash, customer_id, event_id",
    "meterbook_billing.meter_windows": "close_month, window_id, billing_customer_id, "
    "window_start, window_end, period_start, period_end",
}


RAW_EVENTS = "meterbook_raw.raw_events"
# The raw events Spark's ingest wrote (ingest/spark_read.py): one folder per ingest run, named
# by the file_seqs it allotted, partitioned by the event's UTC day inside.
RAW_EVENTS_FOLDER = "raw_events"
_RUN_FOLDER = re.compile(r"ingest=(\d+)-(\d+)")
# Of those rows, the ones of files on record: `files` is a relation of (file_seq, error) of
# recorded files. A run that failed left rows of no recorded file; a file found unreadable
# half-way left its rows before the problem, then its line 0, which alone counts.
COMMITTED_ROWS = (
    "SELECT {columns} FROM {rows} AS r JOIN {files} AS f ON r.file_seq = f.file_seq "
    "WHERE (f.error IS NULL AND r.line_no > 0) OR (f.error IS NOT NULL AND r.line_no = 0)"
)
_LANDING_FILES = "meterbook_raw.landing_files"


@dataclass(frozen=True)
class LakeTable:
    relation: str  # schema.table in DuckDB
    path: Path  # the folder of its Parquet files
    # set for the raw events Spark's ingest wrote: a view of the committed rows, these
    # columns, the recorded files being the handed-over table of this name
    committed: tuple[str, str] | None = None  # (columns, landing files' relation)

    def as_json(self, spark_prefix: str) -> dict[str, str]:
        """The table as the Spark side of the hand-off names it (spark_handoff.sql)."""
        table = {"relation": spark_relation(self.relation, spark_prefix), "path": str(self.path)}
        if self.committed:
            columns, files = self.committed
            rows = "parquet.`" + str(self.path).replace("`", "``") + "`"
            table["query"] = COMMITTED_ROWS.format(
                columns=columns, rows=rows, files=spark_relation(files, spark_prefix)
            )
        return table


# which workspace the lake is (its home), written by the first to use it
OWNER_FILE = "meterbook-workspace.txt"


class LakeOfAnotherWorkspace(RuntimeError):
    """METERBOOK_LAKE names a lake another workspace uses."""


def claim_lake(lake: Path, home: Path) -> Path:
    """`lake`, once it is known to be the workspace's at `home`: claimed by it when no
    workspace has; refused when another one has, for each run replaces what it wrote there
    (its inputs, a run folder of the same file_seqs) and an ingest removes the run folders of
    no file on its record. A lake inside the home is its own whatever the file says (the
    workspace moved)."""
    marker, owner = lake / OWNER_FILE, str(home.resolve())
    held = marker.read_text(encoding="utf-8").strip() if marker.is_file() else None
    if held == owner:
        return lake
    if held is not None and not lake.resolve().is_relative_to(home.resolve()):
        raise LakeOfAnotherWorkspace(
            f"the lake {lake} is the workspace's at {held} ({marker} says so), not this one's "
            f"at {owner}: one lake, one workspace. Set METERBOOK_LAKE to a folder of this "
            f"workspace's own (unset, it is {home / 'lake'}); or, if that workspace moved here, "
            f"delete {marker}"
        )
    lake.mkdir(parents=True, exist_ok=True)
    partial = marker.with_name(OWNER_FILE + ".partial")
    partial.write_text(owner + "\n", encoding="utf-8")
    partial.replace(marker)
    return lake


def run_folder(lake: Path, first_file_seq: int, last_file_seq: int) -> Path:
    """The folder of one Spark ingest run's rows."""
    return lake / RAW_EVENTS_FOLDER / f"ingest={first_file_seq}-{last_file_seq}"


def _run_folders(lake: Path) -> list[tuple[Path, int, int]]:
    """Every run folder with its first and last file_seq (not Spark's `_temporary`)."""
    root = lake / RAW_EVENTS_FOLDER
    found = [(p, _RUN_FOLDER.fullmatch(p.name)) for p in root.iterdir()] if root.is_dir() else []
    return sorted((p, int(m.group(1)), int(m.group(2))) for p, m in found if m)


def next_file_seq(lake: Path) -> int:
    """The file_seq after every run folder's last: a failed run's file_seqs are not reused
    while anything of its folder is left, so its rows can never pass for a later run's."""
    return max((last for _, _, last in _run_folders(lake)), default=0) + 1


def remove_unrecorded_runs(con: duckdb.DuckDBPyConnection, lake: Path) -> list[str]:
    """Remove the run folders none of whose files is on record; returns their names.

    A run that failed after Spark wrote its rows (the warehouse's transaction rolled back), or
    that read no file whole, left rows that never count (COMMITTED_ROWS) but that every read
    of the lake would list and skip, for ever. Called by an ingest, which holds the warehouse:
    no other run is writing then. A folder only partly removed keeps its file_seqs taken."""
    folders = _run_folders(lake)
    if not folders:
        return []
    # one query for every folder (a daily ingest leaves one a day, for ever)
    ranges = ", ".join(f"({first}, {last})" for _, first, last in folders)
    unrecorded = {
        first
        for (first,) in con.execute(
            f"SELECT first FROM (VALUES {ranges}) AS run(first, last) WHERE NOT EXISTS "
            f"(SELECT 1 FROM {_LANDING_FILES} AS f WHERE f.file_seq BETWEEN first AND last)"
        ).fetchall()
    }
    removed = []
    for folder, first, _ in folders:
        if first in unrecorded:
            shutil.rmtree(folder, ignore_errors=True)
            removed += [] if folder.exists() else [folder.name]
    return removed


def lake_holds_raw_events(con: duckdb.DuckDBPyConnection, lake: Path) -> bool:
    """Every recorded landing file was read by Spark's ingest into `lake` (so Spark reads the
    raw events there rather than a copy from DuckDB). Not so for files a DuckDB ingest read
    (before the workspace moved to Spark) or an empty workspace."""
    if not table_exists(con, "meterbook_raw", "spark_read_files"):
        return False
    if not any((lake / RAW_EVENTS_FOLDER).glob("ingest=*/*/*.parquet")):
        return False
    missing = con.execute(
        f"SELECT count(*) FROM {_LANDING_FILES} WHERE file_seq NOT IN "
        "(SELECT file_seq FROM meterbook_raw.spark_read_files)"
    ).fetchone()[0]
    return missing == 0


def spark_relation(relation: str, prefix: str) -> str:
    """DuckDB's `schema.table` on Spark: the schema under the workspace's prefix, as the
    dbt project names it there (macros/generate_schema_name.sql: mb_spark_schema)."""
    return f"{prefix}_{relation}"


def write_inputs(
    con: duckdb.DuckDBPyConnection, catalog: Catalog, lake: Path, models: tuple[str, ...] = ()
) -> list[LakeTable]:
    """The usage models' inputs, written as Parquet for Spark: the raw events and windows, the
    catalog's metering tables with the meters' SQL in Spark's dialect, and the already built
    `models` (e.g. the fates, for a step that builds only what reads them)."""
    tables = []
    if lake_holds_raw_events(con, lake):
        tables += _raw_events_of_the_lake(con, lake)
    for name, columns in RAW_INPUTS.items():
        if any(table.relation == name for table in tables):
            continue
        folder = _fresh(lake / "in" / name)
        _copy_out(con, f"SELECT {columns} FROM {name}", folder)
        tables.append(LakeTable(name, folder))
    for name, rows in metering_rows(catalog, dialect("spark")).items():
        folder = _fresh(lake / "in" / f"meterbook_catalog.{name}")
        pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMAS[name]), folder / "part-0.parquet")
        tables.append(LakeTable(f"meterbook_catalog.{name}", folder))
    for model in models:
        if not model_exists(con, model):
            raise LookupError(f"{relation(model)} is not built yet: Spark cannot read it")
        folder = _fresh(lake / "in" / relation(model))
        _copy_out(con, f"SELECT * FROM {relation(model)}", folder)
        tables.append(LakeTable(relation(model), folder))
    return tables


def _raw_events_of_the_lake(con: duckdb.DuckDBPyConnection, lake: Path) -> list[LakeTable]:
    """The raw events where Spark's ingest wrote them, and the recorded files that say which
    of those rows count."""
    folder = _fresh(lake / "in" / _LANDING_FILES)
    _copy_out(con, f"SELECT file_seq, error FROM {_LANDING_FILES}", folder)
    names = [c.split(" AS ")[-1] for c in RAW_INPUTS[RAW_EVENTS].split(", ")]
    columns = ", ".join(f"r.{name}" for name in names)
    raw = LakeTable(RAW_EVENTS, lake / RAW_EVENTS_FOLDER, (columns, _LANDING_FILES))
    return [LakeTable(_LANDING_FILES, folder), raw]


def output_table(lake: Path, model: str) -> LakeTable:
    """Where Spark writes model `model` for DuckDB to read back."""
    return LakeTable(relation(model), lake / "out" / model)


def read_back(
    con: duckdb.DuckDBPyConnection,
    table: LakeTable,
    replace_where: str | None = None,
    columns: Mapping[str, str] | None = None,
) -> int:
    """Spark's rows of `table` into the DuckDB table of the same name; returns how many.

    `replace_where` None replaces the whole table; otherwise only the rows it matches are
    replaced (a partition: the days or the month Spark built), the rest kept. `columns`, the
    types the model declares (name: type), give a table created here DuckDB's types where
    Spark has none (JSON) and the model's column order (Spark writes a partition last)."""
    source = parquet_source(table)
    if source is None:
        raise FileNotFoundError(f"Spark wrote no Parquet file for {table.relation} in {table.path}")
    if replace_where is None or not table_exists(con, *table.relation.split(".")):
        found = [row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()]
        types = columns or {}
        names = [n for n in types if n in found] + [n for n in found if n not in types]
        select = ", ".join(
            f"CAST({name} AS {types[name]}) AS {name}" if name in types else name for name in names
        )
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {table.relation.split('.')[0]}")
        con.execute(f"CREATE OR REPLACE TABLE {table.relation} AS SELECT {select} FROM {source}")
    else:
        con.execute(f"DELETE FROM {table.relation} WHERE {replace_where}")
        con.execute(f"INSERT INTO {table.relation} BY NAME SELECT * FROM {source}")
    return con.execute(f"SELECT count(*) FROM {source}").fetchone()[0]


def parquet_source(table: LakeTable) -> str | None:
    """DuckDB's reader of the Parquet files Spark wrote for `table` (None: it wrote none)."""
    files = sorted(table.path.glob("*.parquet"))
    return f"read_parquet([{', '.join(quote_literal(str(f)) for f in files)}])" if files else None


def _copy_out(con: duckdb.DuckDBPyConnection, query: str, folder: Path) -> None:
    target = quote_literal(str(folder / "part-0.parquet"))
    con.execute(f"COPY ({query}) TO {target} (FORMAT parquet)")


def _fresh(folder: Path) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder
