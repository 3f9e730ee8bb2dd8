"""The catalog's features, entitlements, overrides, alerts and webhook (SPEC 9): every mistake
named with its file, line and path; nothing half-loaded."""

from __future__ import annotations

import pytest
from catalog_texts import issues_of, load_text

BASE = """
meters:
  - {code: emails, event_name: email.sent, aggregation: count}
features:
  - {code: sso, type: boolean}
  - {code: emails, type: limit, meter: emails}
plans:
  - code: pro
    currency: USD
    versions:
      - version: 1
        effective_from: 2026-01-01
        entitlements: {sso: true, emails: {limit: 10000, soft: true}}
customers:
  - {id: acme, currency: USD}
subscriptions:
  - id: sub_acme
    customer_id: acme
    plan: pro
    start_date: 2026-03-01
    end_date: 2027-03-01
    entitlement_overrides:
      - {feature: emails, limit: 20000, effective_from: 2026-10-01, effective_to: 2027-01-01}
alerts:
  - {code: spend_watch, plan: pro, metric: spend, thresholds: ["80.00", "100.00"]}
  - {code: emails_high, customer_id: acme, metric: usage, meter: emails, thresholds: ["9000"]}
settings:
  webhook: {url: "https://hooks.example/meterbook", secret_env: METERBOOK_WEBHOOK_SECRET}
"""


_load, _issues = load_text, issues_of


def test_the_spec_example_loads(tmp_path):
    catalog = _load(tmp_path, BASE)
    version = catalog.plan("pro").versions[0]
    assert version.entitlements["sso"] is True
    assert str(version.entitlements["emails"].limit) == "10000"
    assert [str(t) for t in catalog.alerts[0].thresholds] == ["80.00", "100.00"]
    assert catalog.settings.webhook.secret_env == "METERBOOK_WEBHOOK_SECRET"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("meter: emails}", "meter: emailz}", "catalog.yaml:6: features[emails].meter: unknown meter 'emailz'"),
        ("{sso: true,", "{sso: true, nope: true,", "plans[pro].versions[0].entitlements.nope: unknown feature 'nope'"),
        ("{sso: true,", "{sso: {limit: 3},", "entitlements.sso: 'sso' is a boolean feature"),
        ("effective_from: 2026-10-01", "effective_from: 2026-01-01", "subscriptions[sub_acme].entitlement_overrides[0].effective_from: the override starts outside the subscription's dates"),
        ("effective_to: 2027-01-01", "effective_to: 2027-06-01", "entitlement_overrides[0].effective_to: the override ends after the subscription's end_date"),
        ('["80.00", "100.00"]', '["100.00", "80.00"]', "alerts[spend_watch].thresholds: thresholds must be listed in increasing order"),
        ('["9000"]', '["-5"]', "alerts[emails_high].thresholds[0]: Input should be greater than 0"),
        ("meter: emails, thresholds", "meter: nope, thresholds", "alerts[emails_high].meter: unknown meter 'nope'"),
        ("metric: spend,", "metric: spend, meter: emails,", "a spend alert watches the draft's total"),
        ("plan: pro, metric", "plan: gold, metric", "alerts[spend_watch].plan: unknown plan 'gold'"),
        ("secret_env: METERBOOK_WEBHOOK_SECRET", "secret_env: not a name", "settings.webhook.secret_env"),
    ],
)  # fmt: skip
def test_mistakes_are_named_with_file_line_and_path(tmp_path, old, new, expected):
    assert old in BASE
    issues = _issues(tmp_path, BASE.replace(old, new, 1))
    assert any(expected in issue for issue in issues), issues
    assert all("catalog.yaml:" in issue for issue in issues), issues


def test_overlapping_overrides_of_one_feature_are_refused(tmp_path):
    second = "      - {feature: emails, limit: 5, effective_from: 2026-12-01}\n"
    text = BASE.replace("effective_to: 2027-01-01}\n", "effective_to: 2027-01-01}\n" + second)
    (issue,) = _issues(tmp_path, text)
    assert "entitlement_overrides[1].effective_from: overlaps entitlement_overrides[0]" in issue
