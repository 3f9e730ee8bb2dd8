"""The `Meterbook-Signature` header (SPEC 9): `sha256=` and the lowercase hex HMAC-SHA256 of
the exact body bytes, keyed with the webhook secret. A receiver recomputes it over the raw
body it received (before any JSON parsing) and compares in constant time (`verify`)."""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["SIGNATURE_HEADER", "signature", "verify"]

SIGNATURE_HEADER = "Meterbook-Signature"
_PREFIX = "sha256="


def signature(secret: str, body: bytes) -> str:
    if not secret:
        raise ValueError("the webhook secret is empty")
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return _PREFIX + digest


def verify(secret: str, body: bytes, header: str | None) -> bool:
    """What a receiver runs: compare_digest, so the time taken reveals nothing of the digest."""
    if not header:
        return False
    return hmac.compare_digest(signature(secret, body), header.strip())
