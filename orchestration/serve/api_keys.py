"""Who may POST events (SPEC 9): the catalog's `settings.api_keys`, by SHA-256.

The catalog is read again when one of its files changes (polled by `events_api.Intake`), so
revoking a leaked key (`revoked: true`) or adding one takes effect within a second, without a
restart. A catalog that no longer loads leaves the keys as they were (and says so in the log):
a typo in a price must not lock every producer out. The key itself is never stored, logged or
put in an error: only its hash is compared.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass

from orchestration.catalog.models import ApiKey, Catalog, EventsApi
from orchestration.serve.errors import ApiError

log = logging.getLogger(__name__)

KEY_PREFIX = "mbk_"
_BEARER = "bearer "


def new_key() -> str:
    """A fresh key for a producer (256 random bits)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class KeyRing:
    """The keys and the events API's settings of one catalog."""

    keys: dict[str, ApiKey]  # sha256 -> key
    settings: EventsApi

    @classmethod
    def of(cls, catalog: Catalog | None) -> KeyRing:
        if catalog is None:
            return cls({}, EventsApi())
        settings = catalog.settings
        # an event longer than the ingest's line cap would be accepted, then malformed
        cap = min(settings.events_api.max_event_bytes, settings.max_line_bytes)
        events_api = settings.events_api.model_copy(update={"max_event_bytes": cap})
        return cls({k.sha256: k for k in settings.api_keys}, events_api)

    def authenticate(self, authorization: str | None) -> ApiKey:
        """The key behind an `Authorization: Bearer <key>` header; ApiError 401 when there is
        none or it is unknown, 403 when it is revoked."""
        if not authorization or not authorization[: len(_BEARER)].lower() == _BEARER:
            raise _unauthorized("missing_key", "send the API key as 'Authorization: Bearer <key>'")
        presented = authorization[len(_BEARER) :].strip()
        key = self.keys.get(key_hash(presented)) if presented else None
        if key is None:
            raise _unauthorized("unknown_key", "the API key is not one of the catalog's")
        if key.revoked:
            raise ApiError(403, "revoked_key", f"the API key '{key.id}' has been revoked")
        return key


def _unauthorized(code: str, message: str) -> ApiError:
    return ApiError(401, code, message, {"WWW-Authenticate": 'Bearer realm="meterbook"'})
