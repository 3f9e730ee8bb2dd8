"""Rules that tie the events API's keys and limits to the rest of the catalog (SPEC 9). Each
yields (path, message) like validation.py, which calls them."""

from __future__ import annotations

from collections.abc import Iterator

from orchestration.catalog.models import Catalog

Problem = tuple[tuple, str]


def api_key_problems(catalog: Catalog) -> Iterator[Problem]:
    settings = catalog.settings
    customers = {c.id for c in catalog.customers}
    ids: dict[str, int] = {}
    hashes: dict[str, int] = {}
    for i, key in enumerate(settings.api_keys):
        at = ("settings", "api_keys", i)
        if key.id in ids:
            yield (*at, "id"), f"api key id {key.id!r} is also api_keys[{ids[key.id]}]'s"
        if key.sha256 in hashes:
            # one key would authenticate as two producers: revoking one would not stop it
            yield (*at, "sha256"), f"the same key as api_keys[{hashes[key.sha256]}]"
        ids.setdefault(key.id, i)
        hashes.setdefault(key.sha256, i)
        for c, customer_id in enumerate(key.customers or []):
            if customer_id not in customers:
                yield (*at, "customers", c), f"unknown customer {customer_id!r}"
    # only when set: by default the API takes the smaller of the two (KeyRing.of)
    chosen = "max_event_bytes" in settings.events_api.model_fields_set
    if chosen and settings.events_api.max_event_bytes > settings.max_line_bytes:
        yield (
            ("settings", "events_api", "max_event_bytes"),
            f"more than settings.max_line_bytes ({settings.max_line_bytes}): the ingest would "
            "reject as malformed an event the API accepted",
        )
