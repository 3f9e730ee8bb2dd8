"""The catalog loader: merging, exact decimals, and every mistake reported with file, path, line."""

from __future__ import annotations

import os
import random
import textwrap
from decimal import Decimal
from pathlib import Path

import pytest

from orchestration.catalog import CatalogError, load_catalog, load_catalog_cached
from orchestration.demo.generate import demo_customers, write_catalog

BASE = """
settings: {invoice_prefix: MB, grace_days: 3, default_currency: USD}
meters:
  - {code: calls, event_name: api.request, aggregation: count}
plans:
  - code: basic
    currency: USD
    versions:
      - version: 1
        effective_from: 2026-01-01
        charges:
          - {meter: calls, model: per_unit, unit_price: 0.1}
customers:
  - {id: acme, currency: USD}
subscriptions:
  - {id: s1, customer_id: acme, plan: basic, start_date: 2026-01-01}
"""


def write(folder: Path, name: str, text: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(textwrap.dedent(text), encoding="utf-8")


def issues_of(folder: Path) -> list[str]:
    with pytest.raises(CatalogError) as info:
        load_catalog(folder)
    return [str(i) for i in info.value.issues]


def test_yaml_floats_become_exact_decimals(tmp_path):
    write(tmp_path / "catalog", "a.yaml", BASE)
    catalog = load_catalog(tmp_path / "catalog")
    assert catalog.plans[0].versions[0].charges[0].unit_price == Decimal("0.1")


def test_files_are_merged(tmp_path):
    write(tmp_path / "catalog", "a.yaml", BASE)
    write(tmp_path / "catalog", "b.yaml", "customers:\n  - {id: globex}\n")
    catalog = load_catalog(tmp_path / "catalog")
    assert [c.id for c in catalog.customers] == ["acme", "globex"]


def test_every_field_error_is_reported_with_file_path_and_line(tmp_path):
    write(
        tmp_path / "catalog", "a.yaml", BASE.replace("aggregation: count}", "aggregation: counts}")
    )
    write(
        tmp_path / "catalog",
        "b.yaml",
        "customers:\n  - {id: x}\n  - {id: y, timezone: Mars/Base}\n",
    )
    found = issues_of(tmp_path / "catalog")
    assert any(i.startswith("catalog/a.yaml:4: meters[calls].aggregation") for i in found), found
    assert any(
        i.startswith("catalog/b.yaml:3: customers[y].timezone") and "Mars/Base" in i for i in found
    ), found


def test_cross_reference_errors_point_into_the_right_file(tmp_path):
    write(tmp_path / "catalog", "a.yaml", BASE)
    write(
        tmp_path / "catalog",
        "subs.yaml",
        """
        customers:
          - {id: euro, currency: EUR}
        subscriptions:
          - {id: s2, customer_id: euro, plan: basic, start_date: 2026-01-01}
          - {id: s3, customer_id: ghost, plan: nope, start_date: 2026-01-01}
        """,
    )
    found = issues_of(tmp_path / "catalog")
    assert any(
        "catalog/subs.yaml" in i and "subscriptions[s2].plan" in i and "EUR" in i for i in found
    ), found
    assert any("subscriptions[s3].customer_id" in i and "ghost" in i for i in found), found
    assert any("subscriptions[s3].plan" in i and "nope" in i for i in found), found


@pytest.mark.parametrize(
    ("tiers", "message"),
    [
        (
            "[{up_to: 10, unit_price: 1}, {up_to: 5, unit_price: 1}, {up_to: null, unit_price: 1}]",
            "increase",
        ),
        ("[{up_to: 10, unit_price: 1}]", "open"),
        ("[{up_to: null, unit_price: 1}, {up_to: null, unit_price: 1}]", "only the last"),
    ],
)
def test_bad_tiers(tmp_path, tiers, message):
    charge = "{meter: calls, model: per_unit, unit_price: 0.1}"
    write(
        tmp_path / "catalog",
        "a.yaml",
        BASE.replace(charge, f"{{meter: calls, model: graduated, tiers: {tiers}}}"),
    )
    found = issues_of(tmp_path / "catalog")
    assert any("plans[basic].versions[0].charges[0]" in i and message in i for i in found), found


def test_duplicate_version_dates_are_reported(tmp_path):
    text = BASE.replace("meter: calls, model", "meter: tokens, model").replace(
        "        charges:",
        "        charges: []\n      - version: 2\n        effective_from: 2026-01-01\n        charges:",
    )
    write(tmp_path / "catalog", "a.yaml", text)
    found = issues_of(tmp_path / "catalog")
    assert any("versions" in i and "appears twice" in i for i in found), found


def test_override_outside_the_subscription(tmp_path):
    text = BASE.replace(
        "start_date: 2026-01-01}",
        "start_date: 2026-01-01, end_date: 2026-06-01, price_overrides: "
        "[{meter: calls, model: per_unit, unit_price: 0.05, effective_from: 2026-07-01}]}",
    )
    write(tmp_path / "catalog", "a.yaml", text)
    found = issues_of(tmp_path / "catalog")
    assert any("price_overrides[0].effective_from" in i for i in found), found


def test_invalid_yaml_names_the_line_and_column_once(tmp_path):
    write(tmp_path / "catalog", "a.yaml", "meters:\n  - {code: x\n")
    (found,) = issues_of(tmp_path / "catalog")
    assert found.startswith("catalog/a.yaml:3:1: invalid YAML: ") and "line 2" in found, found
    assert "\n" not in found


def test_nothing_cascades_from_a_file_that_does_not_parse(tmp_path):
    # issue 22: one bracket typo in the plans gave one error per subscription of the plan
    plans, rest = BASE.split("customers:")
    write(tmp_path / "catalog", "plans.yaml", plans.replace("code: basic", "code: [basic"))
    subscriptions = "".join(
        f"  - {{id: s{i}, customer_id: acme, plan: basic, start_date: 2026-0{i}-01}}\n"
        for i in range(1, 4)
    )
    write(tmp_path / "catalog", "rest.yaml", "customers:\n  - {id: acme}\n")
    (tmp_path / "catalog" / "subs.yaml").write_text("subscriptions:\n" + subscriptions)
    (found,) = issues_of(tmp_path / "catalog")
    assert found.startswith("catalog/plans.yaml:") and "invalid YAML" in found, found


def test_a_second_definition_points_at_the_first(tmp_path):
    write(tmp_path / "catalog", "a.yaml", BASE)
    write(tmp_path / "catalog", "b.yaml", "customers:\n  - {id: acme, currency: USD}\n")
    found = issues_of(tmp_path / "catalog")
    assert (
        "catalog/b.yaml:2: customers[acme].id: 'acme' is defined twice (first at catalog/a.yaml:14)"
    ) in found, found


def test_entries_are_named_by_code_and_odd_codes_are_quoted(tmp_path):
    text = BASE.replace("code: basic", "code: '2024'").replace("plan: basic", "plan: '2024'")
    write(tmp_path / "catalog", "a.yaml", text.replace("unit_price: 0.1", "unit_price: -1"))
    found = issues_of(tmp_path / "catalog")
    assert any("plans['2024'].versions[0].charges[0].unit_price" in i for i in found), found


def test_empty_catalog_folder(tmp_path):
    (tmp_path / "catalog").mkdir()
    assert "no *.yaml" in issues_of(tmp_path / "catalog")[0]


def test_scenario_catalogs_load():
    root = Path(__file__).resolve().parents[2].parent / "shared" / "scenarios"
    if not root.is_dir():
        pytest.skip(f"no scenarios folder at {root}")
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        assert load_catalog(folder / "catalog").subscriptions, folder.name


@pytest.mark.parametrize("seed", [20261001, 7])
def test_the_demo_catalog_loads(tmp_path, seed):
    # the pricing file and the customers the demo generates: stricter rules must keep it valid
    write_catalog(tmp_path / "catalog", demo_customers(random.Random(seed)))
    catalog = load_catalog(tmp_path / "catalog")
    assert {p.currency for p in catalog.plans} >= {"USD", "EUR", "JPY"}
    assert len(catalog.subscriptions) > 40


def test_the_cached_catalog_follows_the_files_bytes_not_their_times(tmp_path):
    folder = tmp_path / "catalog"
    write(folder, "catalog.yaml", BASE)
    first = load_catalog_cached(folder)
    assert load_catalog_cached(folder) is first  # unchanged: parsed once
    # same size, same mtime: only the bytes tell the new price from the old
    path = folder / "catalog.yaml"
    stat = path.stat()
    path.write_text(path.read_text().replace("unit_price: 0.1", "unit_price: 0.2"))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    changed = load_catalog_cached(folder)
    assert changed.plans[0].versions[0].charges[0].unit_price == Decimal("0.2")
    write(folder, "more.yaml", "customers:\n  - {id: globex, currency: USD}\n")
    assert [c.id for c in load_catalog_cached(folder).customers] == ["acme", "globex"]
    write(folder, "more.yaml", "customers: [")
    with pytest.raises(CatalogError):  # an error is raised every time, never cached
        load_catalog_cached(folder)
    with pytest.raises(CatalogError):
        load_catalog_cached(folder)
