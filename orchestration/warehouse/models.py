"""The dbt models Python reads, resolved through dbt's manifest instead of typed by hand.

Python SQL names a model the way a dbt model does, `{{ ref('fct_invoices') }}`, and
`with_refs` swaps in the relation the manifest gives (schema and alias, so a change to the
project's schema config reaches Python too). The manifest is written by `dbt parse`
(defs/dbt/project.py: ensure_manifest, run before every build and by the CLI).
"""

from __future__ import annotations

import functools
import json
import re

import duckdb

from orchestration.warehouse.tables import table_exists
from orchestration.workspace import DBT_PROJECT_DIR

MANIFEST = DBT_PROJECT_DIR / "target" / "manifest.json"
_REF = re.compile(r"\{\{\s*ref\(\s*'(\w+)'\s*\)\s*\}\}")


class ManifestMissing(RuntimeError):
    """dbt has not parsed the project in this checkout yet."""


def relation(model: str) -> str:
    """`schema.alias` of a dbt model, as the manifest places it."""
    schema, alias = _relation_parts(model)
    return f"{schema}.{alias}"


def with_refs(sql: str) -> str:
    """`sql` with every `{{ ref('model') }}` replaced by the model's relation."""
    return _REF.sub(lambda match: relation(match.group(1)), sql)


def model_exists(con: duckdb.DuckDBPyConnection, model: str) -> bool:
    """True when dbt has built `model` in this warehouse."""
    return table_exists(con, *_relation_parts(model))


def _relation_parts(model: str) -> tuple[str, str]:
    if not MANIFEST.exists():
        raise ManifestMissing(
            f"{MANIFEST} is missing: dbt has not parsed the project here yet "
            "(any `meterbook close` or `dbt parse` in dbt_project/ writes it)"
        )
    relations = _relations(MANIFEST.stat().st_mtime_ns)
    if model not in relations:
        raise KeyError(f"no dbt model {model!r} in {MANIFEST}")
    return relations[model]


@functools.cache
def _relations(_mtime_ns: int) -> dict[str, tuple[str, str]]:
    # keyed by mtime: a re-parse (new model, new schema) is read again
    nodes = json.loads(MANIFEST.read_text(encoding="utf-8"))["nodes"].values()
    return {
        node["name"]: (node["schema"], node.get("alias") or node["name"])
        for node in nodes
        if node["resource_type"] in ("model", "seed", "snapshot")
    }


def declared_types(model: str) -> dict[str, str]:
    """The types `model`'s columns declare in its yml (`data_type`), enforced or not."""
    _relation_parts(model)  # the manifest exists and names the model
    return dict(_declared(MANIFEST.stat().st_mtime_ns).get(model, {}))


@functools.cache
def _declared(_mtime_ns: int) -> dict[str, dict[str, str]]:
    nodes = json.loads(MANIFEST.read_text(encoding="utf-8"))["nodes"].values()
    return {
        node["name"]: {
            c["name"]: c["data_type"] for c in node["columns"].values() if c.get("data_type")
        }
        for node in nodes
        if node["resource_type"] == "model"
    }
