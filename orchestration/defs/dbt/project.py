"""The one dbt project behind the usage and close stages: its manifest, asset keys and builds.

The dbt models become Dagster assets in three groups that differ only in partitioning
(defs/usage/assets.py and defs/close/assets.py declare them):

- usage models (fates, metered events): unpartitioned; the fates table is built
  incrementally, by read order (a late file can change any day's fates, so the build follows
  what was read, not a calendar);
- `fct_daily_meter_usage`: daily partitions, replaced one UTC day at a time;
- billing models (windows, rating, invoices): monthly partitions, one close month at a time.
Partitions reach dbt as environment variables, not `--vars` (runner.py says why).
"""

import functools
import json
import shutil
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dagster import AssetKey, MaterializeResult
from dagster_dbt import DagsterDbtTranslator, DbtCliResource

from orchestration.defs.dbt.descriptions import model_description, test_description
from orchestration.defs.dbt.manifest import MANIFEST, ensure_manifest
from orchestration.defs.dbt.runner import (
    PROJECT_TARGET,
    environment,
    keep_partial_parse,
    partial_parse_cache,
    partition_env,
    prune_stale_targets,
    seed_partial_parse,
)
from orchestration.defs.dbt.shared_parse import profile_env
from orchestration.defs.dbt.spark_stage import build_on_spark, on_spark
from orchestration.defs.resources import MeterbookWorkspace
from orchestration.sql import connect
from orchestration.warehouse.billing import add_later_invoice_line_columns, ensure_billing_schema
from orchestration.warehouse.entitlements import ensure_entitlements_schema
from orchestration.warehouse.ledger import ensure_ledger_schema
from orchestration.warehouse.raw import ensure_raw_schema
from orchestration.warehouse.usage import drop_fates_of_an_older_layout

DAILY_SELECT = "fct_daily_meter_usage"
BILLING_SELECT = "tag:billing"
# dbt unit tests prove the SQL by hand-made rows in the test suite; a close has no use for them
BUILD = ["build", "--exclude-resource-type", "unit_test"]
USAGE_SELECT = "tag:usage"
REVENUE_SELECT = "tag:revenue"
ENTITLEMENTS_SELECT = "tag:entitlements"
# two ledger tables revenue reads stand for the assets that write them, so the revenue models
# show downstream of finalization and the wallet ledger (a key names one dbt resource only:
# the other ledger tables keep keys of their own)
LEDGER_WRITERS = {
    "invoices": AssetKey("finalized_invoices"),
    "wallet_entries": AssetKey("wallet_ledger"),
}


def source_keys(schema: str, always: tuple[str, ...] = ()) -> list[AssetKey]:
    """Keys of the dbt sources in `schema`: the tables a Python asset must declare it writes."""
    sources = json.loads(ensure_manifest().read_text())["sources"].values()
    names = {s["name"] for s in sources if s["schema"] == schema} | set(always)
    return [AssetKey([schema, name]) for name in sorted(names)]


def model_key(name: str) -> AssetKey:
    """The asset key of dbt model `name`, as the translator derives it from the manifest."""
    for node in _manifest_nodes(ensure_manifest().stat().st_mtime_ns):
        if node["resource_type"] in ("model", "seed") and node["name"] == name:
            return translator.get_asset_key(node)
    raise KeyError(f"no dbt model {name!r} in {MANIFEST}")


@functools.cache
def _manifest_nodes(_mtime_ns: int) -> tuple[Mapping[str, Any], ...]:
    return tuple(json.loads(MANIFEST.read_text())["nodes"].values())


class MeterbookTranslator(DagsterDbtTranslator):
    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            name = dbt_resource_props["name"]
            if dbt_resource_props["schema"] == "meterbook_ledger" and name in LEDGER_WRITERS:
                return LEDGER_WRITERS[name]
            # the Python asset that writes the table declares this same key (source_keys)
            return AssetKey([dbt_resource_props["schema"], dbt_resource_props["name"]])
        return AssetKey(dbt_resource_props["name"])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        tags = dbt_resource_props.get("tags", [])
        return next((t for t in ("billing", "revenue", "entitlements") if t in tags), "usage")

    def get_description(self, dbt_resource_props: Mapping[str, Any]) -> str:
        group = self.get_group_name(dbt_resource_props) or "billing"
        return model_description(dbt_resource_props, group)

    def get_asset_check_spec(self, asset_spec, manifest, unique_id, project):
        spec = super().get_asset_check_spec(asset_spec, manifest, unique_id, project)
        if spec is None:
            return None
        test = manifest["nodes"][unique_id]
        model = asset_spec.key.to_user_string()
        return spec._replace(description=test_description(test, model))


def build_models(
    context,
    dbt: DbtCliResource,
    meterbook: MeterbookWorkspace,
    partition: dict[str, str] | None,
    under: Path = PROJECT_TARGET,
):
    """The asset's own dbt models for `partition`, streamed back as their materializations.
    With settings.warehouse spark, those Spark builds are built there first (spark_stage.py)."""
    selected = [key.path[-1] for key in context.selected_asset_keys] if context else []
    with _invocation(context, meterbook, under) as target:
        spark = _spark_first(context, meterbook, selected, partition)
        with environment(partition_env(partition)):  # dbt.cli copies os.environ for dbt
            invocation = dbt.cli([*BUILD, *_excluded(spark)], context=context, target_path=target)
        yield from _in_graph_order(context, invocation.stream(), spark)


def _in_graph_order(context, events: Iterator, spark: Mapping[str, int]) -> Iterator:
    """DuckDB's materializations with those of the models Spark built among them, each just
    before the first of its descendants: a multi-asset yields its assets in the graph's order
    (dbt keeps that order across the models a build excludes)."""
    pending = {
        model: MaterializeResult(
            asset_key=model_key(model), metadata={"engine": "spark", "rows": rows}
        )
        for model, rows in spark.items()
    }
    below = {model: _descendants(model) for model in pending}
    for event in events:
        name = _event_model(context, event)
        for model in [m for m in pending if name in below[m]]:
            yield pending.pop(model)
        yield event
    yield from pending.values()


def _event_model(context, event) -> str | None:
    key = getattr(event, "asset_key", None)
    if key is None and getattr(event, "output_name", None):
        key = context.assets_def.keys_by_output_name.get(event.output_name)
    return key.path[-1] if key else None


def _descendants(model: str) -> set[str]:
    """The names of every node downstream of dbt model `model` (the parsed manifest's nodes,
    read once per parse)."""
    nodes = _manifest_nodes(ensure_manifest().stat().st_mtime_ns)
    below, grew = {model}, True
    while grew:  # a node is below when any node it depends on is; the graph is small
        found = {
            node["name"]
            for node in nodes
            if any(
                parent.startswith("model.") and parent.rsplit(".", 1)[-1] in below
                for parent in node.get("depends_on", {}).get("nodes", [])
            )
        }
        grew = not found <= below
        below |= found
    return below - {model}


def rebuild_models(
    context,
    dbt: DbtCliResource,
    meterbook: MeterbookWorkspace,
    select: str,
    partition: dict[str, str],
) -> None:
    """`dbt build --select select` for another partition than the step's own, through the same
    dbt resource: a step that needs other months rebuilt first (re-rating finalized months)
    runs them inside itself, and its materialization names them."""
    with _invocation(context, meterbook, PROJECT_TARGET) as target:
        spark = _spark_first(context, meterbook, selected_models(select), partition)
        with environment(partition_env(partition)):
            invocation = dbt.cli(
                [*BUILD, "--select", select, *_excluded(spark)],
                manifest=ensure_manifest(),
                dagster_dbt_translator=translator,
                target_path=target,
            )
        invocation.wait()


def _spark_first(
    context, meterbook: MeterbookWorkspace, models: list[str], partition: dict | None
) -> dict[str, int]:
    """With settings.warehouse spark, the `models` Spark builds, built there and read back into
    the warehouse (rows per model); nothing otherwise."""
    moved = on_spark(models)
    if not moved:
        return {}
    catalog = meterbook.catalog()
    if catalog.settings.warehouse != "spark":
        return {}
    log = context.log.info if context else (lambda _: None)
    return build_on_spark(meterbook.workspace, catalog, moved, partition, log)


def _excluded(spark: Mapping[str, int]) -> list[str]:
    return ["--exclude", *spark] if spark else []


def selected_models(select: str) -> list[str]:
    """The models a `--select` of names and `tag:` methods picks (the forms used here)."""
    nodes = _manifest_nodes(ensure_manifest().stat().st_mtime_ns)
    chosen = []
    for token in select.split():
        tag = token.removeprefix("tag:") if token.startswith("tag:") else None
        chosen += [
            node["name"]
            for node in nodes
            if node["resource_type"] == "model"
            and (tag in node.get("tags", []) if tag else node["name"] == token)
        ]
    return chosen


@contextmanager
def _invocation(context, meterbook: MeterbookWorkspace, under: Path) -> Iterator[Path]:
    """The warehouse held exclusively and a target folder of its own for one dbt build."""
    with meterbook.exclusive() as warehouse:
        ensure_source_tables(warehouse)
        cache = partial_parse_cache(warehouse)
        target = _invocation_target(context, under)
        profile = profile_env()  # the environment dbt.cli hands to dbt
        seed_partial_parse(cache, target, profile)
        yield target
        keep_partial_parse(target, cache, profile)
    # every invocation writes its artifacts (a few MB) to a folder of its own under the
    # project's target/, which a daily schedule would fill for ever. A failed build raises
    # above and keeps its folder for whoever looks into it, until prune_stale_targets.
    shutil.rmtree(target, ignore_errors=True)
    prune_stale_targets(under)


def _invocation_target(context, under: Path) -> Path:
    """A folder of its own for one dbt build, named as dagster-dbt names them:
    <asset>-<run id>-<uuid>, each id cut to 7 characters."""
    op = context.op_execution_context.op.name if context else "usage_models"
    run = context.run.run_id[:7] if context else "0000000"
    return under / f"{op}-{run}-{uuid.uuid4().hex[:7]}"


def ensure_source_tables(warehouse: Path) -> None:
    """The tables Python writes and dbt reads, present and in today's columns, before dbt runs.

    The ingest upgrades them too, but after upgrading meterbook an engineer may re-materialize
    usage or billing alone (a backfill, a catalog change), and dbt would then fail on the old
    columns. A warehouse no ingest has written yet gets the tables empty, so dbt never finds
    the raw sources missing.
    """
    con = connect(warehouse)
    try:
        ensure_raw_schema(con)
        # and the close's tables, which staging reads too (empty before any close: usage only)
        ensure_billing_schema(con)
        ensure_ledger_schema(con)  # the wallet models read the permanent wallet entries
        ensure_entitlements_schema(con)
        drop_fates_of_an_older_layout(con)
        add_later_invoice_line_columns(con)
    finally:
        con.close()


translator = MeterbookTranslator()
