"""Issue 19, bug 4: two subscriptions billing the same usage twice are a catalog error.

Two subscriptions overlap when they bill the same customer (a sub-account bills to its
parent), their active dates `[start_date, end_date)` share a day, and their plans charge a
common meter in any version (or an override names one). A plan change, one subscription
ending on the day the next begins, shares no day.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from orchestration.catalog import CatalogError, load_catalog

BASE = """
meters:
  - {code: calls, event_name: api.request, aggregation: count}
  - {code: tokens, event_name: llm.completion, aggregation: sum, expression: n}
  - {code: gpu, event_name: gpu.usage, aggregation: sum, expression: ms}
plans:
  - code: pro
    currency: USD
    versions:
      - version: 1
        effective_from: 2026-01-01
        charges:
          - {meter: calls, model: per_unit, unit_price: "0.1"}
          - {meter: tokens, model: per_unit, unit_price: "0.01"}
  - code: support
    currency: USD
    versions:
      - version: 1
        effective_from: 2026-01-01
        fixed_fees: [{code: support, amount: "50.00"}]
  - code: gpu_only
    currency: USD
    versions:
      - version: 1
        effective_from: 2026-01-01
        charges: [{meter: gpu, model: per_unit, unit_price: "1"}]
  - code: gpu_addon
    currency: USD
    versions:
      - version: 1
        effective_from: 2026-01-01
        charges: [{meter: gpu, model: per_unit, unit_price: "1"}]
      - version: 2
        effective_from: 2026-07-01
        charges:
          - {meter: gpu, model: per_unit, unit_price: "1"}
          - {meter: tokens, model: per_unit, unit_price: "0.02"}
customers:
  - {id: acme, currency: USD}
  - {id: acme-research, parent_id: acme}
  - {id: beta, currency: USD}
subscriptions:
  - {id: s_acme, customer_id: acme, plan: pro, start_date: 2026-01-01, end_date: 2026-06-01}
  - {id: s_beta, customer_id: beta, plan: pro, start_date: 2026-01-01}
"""


def write(folder: Path, name: str, text: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(textwrap.dedent(text), encoding="utf-8")


def load(tmp_path: Path, extra: str):
    folder = tmp_path / "catalog"
    write(folder, "a.yaml", BASE)
    write(folder, "b.yaml", extra)
    return load_catalog(folder)


def overlap_issues(tmp_path: Path, extra: str) -> list:
    with pytest.raises(CatalogError) as info:
        load(tmp_path, extra)
    found = [i for i in info.value.issues if "overlaps" in i.message]
    assert found, [str(i) for i in info.value.issues]
    return found


def test_overlapping_subscriptions_on_one_plan_are_an_error(tmp_path):
    extra = """
    subscriptions:
      - {id: s_acme_2, customer_id: acme, plan: pro, start_date: 2026-05-01}
    """
    (issue,) = overlap_issues(tmp_path, extra)
    # the second subscription, where the user wrote it
    assert issue.file == "catalog/b.yaml" and issue.path == "subscriptions[s_acme_2]"
    assert "'s_acme_2'" in issue.message and "'s_acme'" in issue.message
    assert "2026-05-01" in issue.message and "2026-06-01" in issue.message
    assert "'calls'" in issue.message and "'tokens'" in issue.message
    assert str(issue).startswith("catalog/b.yaml:3: subscriptions[s_acme_2]: ")


def test_both_open_ended(tmp_path):
    extra = """
    subscriptions:
      - {id: s_beta_2, customer_id: beta, plan: pro, start_date: 2026-09-15}
    """
    (issue,) = overlap_issues(tmp_path, extra)
    assert "'s_beta_2'" in issue.message and "'s_beta'" in issue.message
    assert "2026-09-15" in issue.message and "no end" in issue.message


def test_a_plan_change_is_not_an_overlap(tmp_path):
    extra = """
    subscriptions:
      - {id: s_acme_2, customer_id: acme, plan: pro, start_date: 2026-06-01}
    """
    assert [s.id for s in load(tmp_path, extra).subscriptions] == ["s_acme", "s_beta", "s_acme_2"]


def test_plans_without_a_common_meter_may_overlap(tmp_path):
    extra = """
    subscriptions:
      - {id: s_acme_support, customer_id: acme, plan: support, start_date: 2026-02-01}
      - {id: s_beta_gpu, customer_id: beta, plan: gpu_only, start_date: 2026-02-01}
      - {id: s_acme_gpu, customer_id: acme, plan: gpu_only, start_date: 2026-02-01}
    """
    assert len(load(tmp_path, extra).subscriptions) == 5


def test_a_meter_charged_by_any_version_counts(tmp_path):
    # gpu_addon charges tokens only from its version 2 (2026-07-01), after the overlap's
    # start: the dates the versions apply to shift with pinning, so every version counts
    extra = """
    subscriptions:
      - {id: s_beta_gpu, customer_id: beta, plan: gpu_addon, start_date: 2026-02-01}
    """
    (issue,) = overlap_issues(tmp_path, extra)
    assert "'s_beta_gpu'" in issue.message and "'tokens'" in issue.message
    assert "'calls'" not in issue.message


def test_a_sub_account_bills_to_its_parent(tmp_path):
    extra = """
    subscriptions:
      - {id: s_research, customer_id: acme-research, plan: pro, start_date: 2026-03-01,
         end_date: 2026-04-01}
    """
    (issue,) = overlap_issues(tmp_path, extra)
    assert issue.path == "subscriptions[s_research]"
    assert "'s_research'" in issue.message and "'s_acme'" in issue.message
    assert "2026-03-01" in issue.message and "2026-04-01" in issue.message


def test_every_overlap_is_reported(tmp_path):
    extra = """
    subscriptions:
      - {id: s_beta_2, customer_id: beta, plan: pro, start_date: 2026-02-01}
      - {id: s_acme_2, customer_id: acme, plan: pro, start_date: 2026-01-15,
         end_date: 2026-02-01}
    """
    found = overlap_issues(tmp_path, extra)
    assert sorted(i.path for i in found) == ["subscriptions[s_acme_2]", "subscriptions[s_beta_2]"]


def test_an_overridden_meter_counts(tmp_path):
    # support charges no meter; the override on calls is an error of its own, and the
    # usage it would price is billed by s_acme too
    extra = """
    subscriptions:
      - {id: s_acme_support, customer_id: acme, plan: support, start_date: 2026-02-01,
         price_overrides: [{meter: calls, model: per_unit, unit_price: "0.05"}]}
    """
    (issue,) = overlap_issues(tmp_path, extra)
    assert "'s_acme_support'" in issue.message and "'calls'" in issue.message
