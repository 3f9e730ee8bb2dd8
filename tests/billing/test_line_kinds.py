"""The line-kind registry (dbt_project/seeds/line_kinds.csv) is the one list of kinds: every
kind a model makes is in it, and Python reads the same rows dbt orders and taxes by."""

from __future__ import annotations

import re

import pytest

from orchestration.billing import line_kinds as registry
from orchestration.workspace import DBT_PROJECT_DIR

MADE = re.compile(r"'([a-z_]+)' as kind\b")


def _kinds_the_models_make() -> set[str]:
    from orchestration.billing.wallets.close import CREDIT_LINE_KINDS  # noqa: PLC0415

    made = {
        kind
        for path in (DBT_PROJECT_DIR / "models").rglob("*.sql")
        for kind in MADE.findall(path.read_text(encoding="utf-8"))
    }
    return made | set(CREDIT_LINE_KINDS)


def test_every_kind_a_model_makes_is_registered():
    made = _kinds_the_models_make()
    assert made, "no kinds found in the models: has the pattern changed?"
    assert made == set(registry.line_kinds())


def test_kinds_come_in_rank_order_with_distinct_ranks():
    kinds = list(registry.line_kinds().values())
    ranks = [k.sort_rank for k in kinds]
    assert ranks == sorted(set(ranks))
    # charges, then discounts, then prepaid credits (SPEC 3.4: promotional credits after
    # discounts; credit purchases last, untaxed)
    assert kinds[0].kind == "usage"
    assert [k.kind for k in kinds[-3:]] == ["discount", "promotional_credit", "credit_purchase"]


def test_groups_and_labels():
    usage = ("usage", "minimum_true_up", "maximum_cap", "commitment_true_up", "spend_cap")
    assert registry.kinds_in_group("usage") == usage
    assert registry.kinds_in_group("fixed_fees") == ("fixed_fee", "fixed_fee_credit")
    assert registry.label("fixed_fee_credit") == "Fee credit"
    assert registry.label("not_a_kind") == "not_a_kind"


def test_a_bad_flag_names_the_seed_line(tmp_path, monkeypatch):
    seed = tmp_path / "line_kinds.csv"
    header = registry.SEED.read_text(encoding="utf-8").splitlines()[0]
    seed.write_text(f"{header}\nusage,1,Usage,usage,yes,true,true,daily_usage\n", encoding="utf-8")
    monkeypatch.setattr(registry, "SEED", seed)
    registry.line_kinds.cache_clear()
    try:
        with pytest.raises(ValueError, match=r"line_kinds.csv:2: expected true or false"):
            registry.line_kinds()
    finally:
        registry.line_kinds.cache_clear()
