"""Finalize, push to Stripe, void, push again: through the real `meterbook` commands.

The Stripe test double of tests/stripe listens on 127.0.0.1 and checks every request against
Stripe's OpenAPI description; the commands reach it through STRIPE_API_BASE.
"""

import json
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from e2e_helpers import SCENARIO, close, meterbook_env, new_workspace, run_ok

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "stripe"))
from stripe_double import StripeDouble  # noqa: E402
from stripe_openapi import OpenApiSpec, fetch_spec  # noqa: E402

from orchestration.billing.money import to_minor_units  # noqa: E402

pytestmark = pytest.mark.slow
PERIOD = "2026-10"
KEY = "sk_test_e2e_void_and_stripe"
SPEC_CACHE = Path(__file__).resolve().parents[2] / ".cache" / "stripe-openapi"


@pytest.fixture(scope="module")
def double():
    try:
        spec = OpenApiSpec.load(fetch_spec(SPEC_CACHE))
    except FileNotFoundError:
        pytest.skip("npm is not installed: Stripe's OpenAPI description cannot be fetched")
    server = StripeDouble(spec, KEY)
    server.start()
    yield server
    server.stop()
    assert not list(server.violations), server.violations


@pytest.fixture(scope="module")
def finalized(tmp_path_factory):
    if not SCENARIO.is_dir():
        pytest.skip(f"no scenario at {SCENARIO} (../shared/scenarios is absent)")
    home = new_workspace(tmp_path_factory.mktemp("void") / "home", SCENARIO)
    close(home)
    run_ok(home, "finalize", "--period", PERIOD)
    return home


def invoices(home: Path) -> list[dict]:
    return json.loads(run_ok(home, "invoices", "--period", PERIOD, "--json").stdout)["invoices"]


def sync(home: Path, double: StripeDouble) -> None:
    run_ok(home, "sync-stripe", "--period", PERIOD, env=_env(home, double))


def _env(home: Path, double: StripeDouble) -> dict:
    return meterbook_env(home, {"STRIPE_API_KEY": KEY, "STRIPE_API_BASE": double.url})


def test_push_void_and_push_again(finalized, double):
    ours = invoices(finalized)
    assert ours and {i["status"] for i in ours} == {"finalized"}

    sync(finalized, double)
    for invoice in ours:
        [pushed] = double.invoices_for(invoice["invoice_id"])
        assert pushed["status"] == "open"
        assert pushed["total"] == to_minor_units(
            Decimal(invoice["amount_due"]), invoice["currency"]
        )
        assert pushed["metadata"]["meterbook_invoice_number"] == invoice["number"]

    posts_before = len(double.posts())
    sync(finalized, double)  # a second full run sends no create (no POST at all)
    assert double.posts()[posts_before:] == []

    victim = ours[0]
    run_ok(finalized, "void", victim["invoice_id"], "--reason", "billed to the wrong entity")
    after = {i["invoice_id"]: i for i in invoices(finalized)}
    assert after[victim["invoice_id"]]["status"] == "void"
    assert after[victim["invoice_id"]]["number"] == victim["number"]  # the number stays
    assert all(after[i["invoice_id"]]["status"] == "finalized" for i in ours[1:])

    sync(finalized, double)
    assert double.invoices_for(victim["invoice_id"])[0]["status"] == "void"
    assert all(double.invoices_for(i["invoice_id"])[0]["status"] == "open" for i in ours[1:])

    # finalizing again after a void neither renumbers nor re-issues anything
    run_ok(finalized, "finalize", "--period", PERIOD)
    assert {i["invoice_id"]: (i["number"], i["status"]) for i in invoices(finalized)} == {
        k: (v["number"], v["status"]) for k, v in after.items()
    }
