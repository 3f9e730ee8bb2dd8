"""Kill the sync at every request in turn, re-run it, and check Stripe holds everything once.

For k = 1..N (N = the requests of a full run), Stripe stops answering at request k — before
executing it, or after executing it but before answering (the worst case: Stripe has the
object, we never learn its id). The run dies with `StripeUnavailable`; Stripe comes back and
the sync is run again on the same warehouse. Two re-run timings:

- right away: search does not see the dead run's objects yet; idempotency keys must save us;
- days later: keys have expired; lookups by metadata must save us.

Every time: exactly one Stripe invoice per ledger invoice, with exactly its items and total,
and a further run sends no request at all.
"""

from __future__ import annotations

import pytest
from stripe_fixtures import PERIOD, assert_stripe_matches_ledger, catalog, insert_standard_ledger

from integrations.stripe.errors import StripeUnavailable
from integrations.stripe.sync import sync_period
from orchestration.sql import connect
from orchestration.warehouse.ledger import ensure_ledger_schema


@pytest.fixture(scope="module")
def ledger():
    con = connect(":memory:")
    ensure_ledger_schema(con)
    insert_standard_ledger(con)
    yield con
    con.close()


def _full_run_requests(con, double, gateway) -> int:
    result = sync_period(con, catalog(), PERIOD, gateway)
    assert not result.failures
    count = len(double.log)
    double.reset()
    return count


def _killed_then_rerun(con, double, gateway, k: int, fault: str, later: bool) -> None:
    # A new Stripe account and a warehouse that never synced: the ledger is only read.
    con.execute("DROP SCHEMA IF EXISTS meterbook_stripe CASCADE")
    double.reset()
    double.search_lag = not later
    double.inject(k, fault)
    with pytest.raises(StripeUnavailable):
        sync_period(con, catalog(), PERIOD, gateway)
    double.revive()
    if later:
        double.expire_idempotency_keys()
        double.index_search()
    result = sync_period(con, catalog(), PERIOD, gateway)
    assert not result.failures, (k, fault, [o.error for o in result.failures])
    assert_stripe_matches_ledger(double)
    assert len(double.customers) == 3, (k, fault)
    sent = len(double.log)
    again = sync_period(con, catalog(), PERIOD, gateway)
    assert len(double.log) == sent and again.creates_sent == 0, (k, fault)


@pytest.mark.parametrize(
    ("later", "faults"),
    [(False, ("die_before", "die_after")), (True, ("die_after",))],
    ids=["rerun_at_once", "rerun_days_later"],
)
def test_killed_at_any_request_and_rerun_leaves_everything_exactly_once(
    ledger, stripe_double, gateway, later, faults
):
    # Days later, only a lost answer matters: what was answered is in the mapping already.
    ledger.execute("DROP SCHEMA IF EXISTS meterbook_stripe CASCADE")
    n = _full_run_requests(ledger, stripe_double, gateway)
    assert n >= 25  # 3 customers, 3 invoices, 10 items, 3 finalizations, 6 lookups
    for k in range(1, n + 1):
        for fault in faults:
            _killed_then_rerun(ledger, stripe_double, gateway, k, fault, later)
