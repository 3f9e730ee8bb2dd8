"""The catalog's API keys and events API settings (SPEC 9): a valid catalog loads into the key
ring `meterbook serve` uses; every mistake is named with its file, line and path."""

from __future__ import annotations

from decimal import Decimal

import pytest
from catalog_texts import issues_of, load_text

from orchestration.serve.api_keys import KeyRing, key_hash
from orchestration.serve.errors import ApiError

MAILER_KEY = "mbk_mailer"
BILLING_KEY = "mbk_billing"
MAILER = key_hash(MAILER_KEY)
BILLING = key_hash(BILLING_KEY)

BASE = f"""
meters:
  - {{code: emails, event_name: email.sent, aggregation: count}}
customers:
  - {{id: acme, currency: USD}}
  - {{id: globex, currency: USD}}
settings:
  max_line_bytes: 65536
  api_keys:
    - id: mailer
      sha256: {MAILER}
      customers: [acme, globex]
    - id: billing.v2
      sha256: {BILLING}
      revoked: true
  events_api:
    rotate_seconds: 0.5
    rotate_events: 1000
    max_event_bytes: 32768
    max_backlog_bytes: 2097152
"""


_load, _issues = load_text, issues_of


def test_keys_and_events_api_settings_load(tmp_path):
    catalog = _load(tmp_path, BASE)
    settings = catalog.settings
    assert [(k.id, k.customers, k.revoked) for k in settings.api_keys] == [
        ("mailer", ["acme", "globex"], False),
        ("billing.v2", None, True),
    ]
    api = settings.events_api
    assert (api.rotate_seconds, api.rotate_events) == (Decimal("0.5"), 1000)
    assert (api.max_event_bytes, api.max_backlog_bytes) == (32768, 2 << 20)
    assert api.max_batch_events == 10_000  # not set: the default
    ring = KeyRing.of(catalog)
    assert ring.settings == api
    assert ring.authenticate(f"Bearer {MAILER_KEY}").id == "mailer"
    assert ring.authenticate(f"bearer {MAILER_KEY}").customers == ["acme", "globex"]
    with pytest.raises(ApiError, match="'billing.v2' has been revoked"):
        ring.authenticate(f"Bearer {BILLING_KEY}")


def test_a_catalog_without_keys_has_none_and_the_default_settings(tmp_path):
    settings = _load(tmp_path, BASE[: BASE.index("  api_keys:")]).settings
    assert settings.api_keys == []
    assert (settings.events_api.rotate_seconds, settings.events_api.max_event_bytes) == (
        Decimal(5),
        64 << 10,
    )


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("- id: billing.v2", "- id: mailer", "catalog.yaml:13: settings.api_keys[1].id: api key id 'mailer' is also api_keys[0]'s"),
        (f"sha256: {BILLING}", f"sha256: {MAILER}", "catalog.yaml:14: settings.api_keys[1].sha256: the same key as api_keys[0]"),
        ("[acme, globex]", "[acme, initech]", "catalog.yaml:12: settings.api_keys[0].customers[1]: unknown customer 'initech'"),
        ("max_event_bytes: 32768", "max_event_bytes: 65537", "catalog.yaml:19: settings.events_api.max_event_bytes: more than settings.max_line_bytes (65536): the ingest would reject as malformed an event the API accepted"),
        (f"sha256: {MAILER}", f"sha256: {MAILER.upper()}", "catalog.yaml:11: settings.api_keys[0].sha256: String should match pattern '^[0-9a-f]{64}$'"),
        (f"sha256: {MAILER}", f"sha256: {MAILER[:63]}", "catalog.yaml:11: settings.api_keys[0].sha256: String should match pattern"),
        (f"sha256: {MAILER}", f"sha256: {MAILER}0", "catalog.yaml:11: settings.api_keys[0].sha256: String should match pattern"),
        ("[acme, globex]", "[]", "catalog.yaml:12: settings.api_keys[0].customers: List should have at least 1 item"),
        ("- id: mailer", "- id: -mailer", "catalog.yaml:10: settings.api_keys[0].id: String should match pattern"),
        ("      revoked: true", "      revoked: true\n      key: mbk_secret", "settings.api_keys[1].key: Extra inputs are not permitted"),
        ("rotate_seconds: 0.5", "rotate_seconds: 0", "catalog.yaml:17: settings.events_api.rotate_seconds: Input should be greater than 0"),
        ("rotate_events: 1000", "rotate_events: 0", "catalog.yaml:18: settings.events_api.rotate_events: Input should be greater than or equal to 1"),
        ("max_backlog_bytes: 2097152", "max_backlog_bytes: 1024", "settings.events_api.max_backlog_bytes: Input should be greater than or equal to 1048576"),
        ("max_event_bytes: 32768", "max_event_bytes: 32768\n    rotate_secs: 5", "settings.events_api.rotate_secs: Extra inputs are not permitted"),
    ],
)  # fmt: skip
def test_mistakes_are_named_with_file_line_and_path(tmp_path, old, new, expected):
    assert BASE.count(old) == 1
    issues = _issues(tmp_path, BASE.replace(old, new))
    assert any(expected in issue for issue in issues), issues
    assert all("catalog.yaml:" in issue for issue in issues), issues


def test_every_api_key_mistake_is_reported_at_once(tmp_path):
    text = BASE.replace("- id: billing.v2", "- id: mailer").replace(BILLING, MAILER)
    text = text.replace("[acme, globex]", "[nope, acme, gone]")
    issues = _issues(tmp_path, text)
    paths = sorted(issue.split(": ", 2)[1] for issue in issues)
    assert paths == [
        "settings.api_keys[0].customers[0]",
        "settings.api_keys[0].customers[2]",
        "settings.api_keys[1].id",
        "settings.api_keys[1].sha256",
    ]


def test_a_revoked_key_still_counts_for_duplicates(tmp_path):
    # one key authenticating as two entries: revoking one would leave it working as the other
    text = BASE.replace(f"sha256: {BILLING}", f"sha256: {MAILER}")
    (issue,) = _issues(tmp_path, text)
    assert issue.endswith("settings.api_keys[1].sha256: the same key as api_keys[0]")


def test_max_event_bytes_equal_to_max_line_bytes_is_allowed(tmp_path):
    text = BASE.replace("max_event_bytes: 32768", "max_event_bytes: 65536")
    assert _load(tmp_path, text).settings.events_api.max_event_bytes == 65536


def test_a_small_line_cap_without_max_event_bytes_loads_and_caps_the_api(tmp_path):
    # a catalog from before the events API, with a line cap under the API's default 64 KiB
    text = BASE.replace("max_line_bytes: 65536", "max_line_bytes: 2048").replace(
        "    max_event_bytes: 32768\n", ""
    )
    catalog = _load(tmp_path, text)
    assert catalog.settings.events_api.max_event_bytes == 64 << 10  # the default, unchanged
    assert KeyRing.of(catalog).settings.max_event_bytes == 2048  # what the API refuses above
