"""Python names dbt models through the manifest (warehouse/models.py; defs/dbt/project.py for
asset keys), never by typing their schema: a model moved to another schema is found again."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from orchestration.defs.dbt.project import ensure_manifest, model_key
from orchestration.warehouse.models import relation, with_refs

ROOT = Path(__file__).resolve().parents[1]
TYPED = re.compile(r"\b(staging|intermediate|marts)\.(stg|int|fct|dim)_\w+")
TYPED_KEY = re.compile(r"AssetKey\(\s*\"(stg|int|fct|dim)_")


@pytest.fixture(scope="module", autouse=True)
def manifest():
    return ensure_manifest()


def test_relation_comes_from_the_manifest():
    assert relation("fct_invoices") == "marts.fct_invoices"
    assert relation("int_events_fated") == "intermediate.int_events_fated"
    sql = "SELECT 1 FROM {{ ref('fct_invoice_lines') }} JOIN {{ref( 'fct_invoices' )}} USING (x)"
    assert (
        with_refs(sql) == "SELECT 1 FROM marts.fct_invoice_lines JOIN marts.fct_invoices USING (x)"
    )


def test_an_unknown_model_is_an_error_naming_it():
    with pytest.raises(KeyError, match="fct_nothing"):
        relation("fct_nothing")
    with pytest.raises(KeyError, match="fct_nothing"):
        model_key("fct_nothing")


def test_model_asset_keys_come_from_the_translator():
    assert model_key("fct_event_fates").path == ["fct_event_fates"]


def test_no_python_module_types_a_model_relation_or_key():
    typed = []
    for folder in (ROOT / "orchestration", ROOT / "integrations"):
        for path in sorted(folder.rglob("*.py")):
            for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if TYPED.search(line) or TYPED_KEY.search(line):
                    typed.append(f"{path.relative_to(ROOT)}:{no}: {line.strip()}")
    assert typed == []
