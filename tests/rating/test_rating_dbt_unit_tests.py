"""The dbt unit tests of the project (`unit_tests:` in the models' YAML): the charge models by
hand in int_usage_lines_rated, the line order in fct_invoice_lines. dbt needs the models'
inputs to exist for their column types, so a close of a small catalog runs first."""

from __future__ import annotations

import json

from rating_harness import RatingProject, catalog_from_text, use

CATALOG = """
meters:
  - {code: calls, name: API calls, event_name: api.request, aggregation: count}
plans:
  - code: basic
    currency: USD
    versions:
      - version: 1
        effective_from: 2026-01-01
        fixed_fees: [{code: platform, name: Platform fee, amount: "30"}]
        charges: [{meter: calls, model: per_unit, unit_price: "0.01"}]
customers:
  - {id: acme, name: Acme, currency: USD}
subscriptions:
  - {id: sub_acme, customer_id: acme, plan: basic, start_date: 2026-01-01}
"""


def test_the_dbt_unit_tests_pass(tmp_path):
    project = RatingProject(tmp_path)
    catalog = catalog_from_text(tmp_path, CATALOG)
    project.close(catalog, "2026-10", [use("acme", "calls", "2026-10-05", 10)])
    project.dbt("2026-10", "test", "--select", "test_type:unit")
    results = json.loads((project.project / "target" / "run_results.json").read_text())
    ran = {
        r["unique_id"].split(".")[-1]: r["status"]
        for r in results["results"]
        if r["unique_id"].startswith("unit_test.")
    }
    assert ran == {
        "charge_models_price_by_hand": "pass",
        "lines_are_numbered_in_kind_rank_order": "pass",
    }
