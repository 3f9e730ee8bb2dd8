"""Who may POST events (SPEC 9; orchestration/serve/api_keys.py): a bearer key matched by its
SHA-256 against the catalog's `settings.api_keys`; 401 for a missing or unknown key (with
WWW-Authenticate), 403 for a revoked one, named by its id and never by the key."""

from __future__ import annotations

import hashlib
import re

import pytest

from orchestration.catalog.models import ApiKey, EventsApi
from orchestration.serve.api_keys import KEY_PREFIX, KeyRing, key_hash, new_key
from orchestration.serve.errors import ApiError

GOOD = "mbk_good-key"
OLD = "mbk_leaked-key"


@pytest.fixture
def ring() -> KeyRing:
    keys = [
        ApiKey(id="mailer", sha256=key_hash(GOOD), customers=["acme"]),
        ApiKey(id="old-mailer", sha256=key_hash(OLD), revoked=True),
    ]
    return KeyRing({k.sha256: k for k in keys}, EventsApi())


def _refusal(ring: KeyRing, header: str | None) -> ApiError:
    with pytest.raises(ApiError) as caught:
        ring.authenticate(header)
    return caught.value


def test_a_valid_key_authenticates_as_its_entry(ring):
    key = ring.authenticate(f"Bearer {GOOD}")
    assert (key.id, key.customers, key.revoked) == ("mailer", ["acme"], False)


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "BeArEr"])
def test_the_scheme_is_case_insensitive(ring, scheme):
    assert ring.authenticate(f"{scheme} {GOOD}").id == "mailer"


def test_spaces_around_the_key_are_ignored(ring):
    assert ring.authenticate(f"Bearer   {GOOD}  ").id == "mailer"


@pytest.mark.parametrize(
    "header",
    [None, "", GOOD, f"Basic {GOOD}", f"Token {GOOD}", f"Bearer{GOOD}", "Bear"],
)
def test_no_bearer_header_is_a_missing_key(ring, header):
    error = _refusal(ring, header)
    assert (error.status, error.code) == (401, "missing_key")
    assert "Authorization: Bearer <key>" in error.message
    assert error.headers == {"WWW-Authenticate": 'Bearer realm="meterbook"'}


@pytest.mark.parametrize(
    "header", ["Bearer ", "Bearer    ", "Bearer nope", f"Bearer {GOOD}x", f"Bearer {GOOD.upper()}"]
)
def test_an_empty_or_unknown_key_is_refused(ring, header):
    error = _refusal(ring, header)
    assert (error.status, error.code) == (401, "unknown_key")
    assert error.message == "the API key is not one of the catalog's"
    assert error.headers == {"WWW-Authenticate": 'Bearer realm="meterbook"'}


def test_a_revoked_key_is_forbidden_and_named_by_its_id_only(ring):
    error = _refusal(ring, f"Bearer {OLD}")
    assert (error.status, error.code) == (403, "revoked_key")
    assert error.message == "the API key 'old-mailer' has been revoked"
    assert OLD not in error.message and key_hash(OLD) not in error.message
    assert str(error) == error.message
    assert error.headers is None


def test_no_error_ever_repeats_the_key_it_was_sent(ring):
    for header in (f"Bearer {OLD}", f"Bearer {GOOD}x", f"Basic {GOOD}"):
        error = _refusal(ring, header)
        assert GOOD not in error.message and OLD not in error.message
        assert "leaked" not in repr(error.args)


def test_a_ring_without_a_catalog_knows_no_key():
    empty = KeyRing.of(None)
    assert empty.keys == {} and empty.settings == EventsApi()
    assert _refusal(empty, f"Bearer {GOOD}").code == "unknown_key"


def test_new_keys_are_random_and_hash_to_their_catalog_entry():
    keys = {new_key() for _ in range(50)}
    assert len(keys) == 50
    for key in keys:
        assert key.startswith(KEY_PREFIX)
        assert re.fullmatch(r"mbk_[A-Za-z0-9_-]{43}", key), key  # 32 bytes, url-safe base64
        assert key_hash(key) == hashlib.sha256(key.encode()).hexdigest()
        assert re.fullmatch(r"[0-9a-f]{64}", key_hash(key))  # what the catalog accepts
    key = next(iter(keys))
    ring = KeyRing({key_hash(key): ApiKey(id="fresh", sha256=key_hash(key))}, EventsApi())
    assert ring.authenticate(f"Bearer {key}").id == "fresh"


def test_key_hash_is_sha256_of_the_utf8_key():
    assert key_hash("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert key_hash("clé") == hashlib.sha256("clé".encode()).hexdigest()
