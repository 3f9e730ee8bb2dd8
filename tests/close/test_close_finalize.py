"""Finalization: gapless numbering, one transaction, no-op twice, void, invoices_with_ledger."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from close_fixtures import catalog, drafts

from orchestration.billing.finalize import (
    FinalizeError,
    close_warning,
    finalize_period,
    period_window,
    void_invoice,
)
from orchestration.billing.ledger import invoice_status, invoices_with_ledger
from orchestration.sql import connect

AFTER_OCT = datetime(2026, 11, 5, tzinfo=UTC)


@pytest.fixture
def con(tmp_path):
    con = connect(tmp_path / "warehouse.duckdb")
    yield con
    con.close()


def numbers(con):
    return [
        r[0]
        for r in con.execute(
            "SELECT number FROM meterbook_ledger.invoices ORDER BY number"
        ).fetchall()
    ]


def ledger_bytes(con):
    """Every ledger row as text: what 'nothing changed' is compared on."""
    tables = ["invoices", "invoice_lines", "invoice_status_changes", "invoice_numbers"]
    return {
        t: con.execute(f"SELECT * FROM meterbook_ledger.{t} ORDER BY ALL").fetchall()
        for t in tables
    }


def test_numbers_are_gapless_in_a_deterministic_order(con):
    result = finalize_period(con, catalog(), "2026-10", AFTER_OCT, drafts=drafts())
    assert [n for _, n in result.numbered] == ["MB-2026-000001", "MB-2026-000002", "MB-2026-000003"]
    by_customer = dict(
        con.execute("SELECT customer_id, number FROM meterbook_ledger.invoices").fetchall()
    )
    # ordered by customer, subscription, period start: acme, beta, tokyo
    assert by_customer == {
        "acme": "MB-2026-000001",
        "beta": "MB-2026-000002",
        "tokyo": "MB-2026-000003",
    }


def test_the_input_order_of_drafts_does_not_change_the_numbers(tmp_path):
    shuffled = drafts()
    shuffled["invoices"].reverse()
    first, second = connect(tmp_path / "a.duckdb"), connect(tmp_path / "b.duckdb")
    finalize_period(first, catalog(), "2026-10", AFTER_OCT, drafts=drafts())
    finalize_period(second, catalog(), "2026-10", AFTER_OCT, drafts=shuffled)
    assert ledger_bytes(first) == ledger_bytes(second)


def test_numbering_continues_across_periods_and_restarts_each_year(con):
    cat = catalog()
    for period in ("2026-10", "2026-11", "2026-12", "2027-01"):
        year, month = int(period[:4]), int(period[5:])
        now = datetime(year + month // 12, month % 12 + 1, 5, tzinfo=UTC)
        finalize_period(con, cat, period, now, drafts=drafts(period))
    got = numbers(con)
    assert got[:9] == [f"MB-2026-{i:06d}" for i in range(1, 10)]
    assert got[9:] == ["MB-2027-000001", "MB-2027-000002", "MB-2027-000003"]
    seqs = con.execute(
        "SELECT number_year, list(number_seq ORDER BY number_seq) FROM meterbook_ledger.invoice_numbers GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert seqs == [(2026, list(range(1, 10))), (2027, [1, 2, 3])]


def test_a_new_prefix_starts_its_own_sequence(con):
    finalize_period(con, catalog(), "2026-10", AFTER_OCT, drafts=drafts())
    finalize_period(
        con,
        catalog(invoice_prefix="INV"),
        "2026-11",
        datetime(2026, 12, 5, tzinfo=UTC),
        drafts=drafts("2026-11"),
    )
    assert sorted(numbers(con)) == sorted(
        [f"MB-2026-{i:06d}" for i in (1, 2, 3)] + [f"INV-2026-{i:06d}" for i in (1, 2, 3)]
    )


def test_finalizing_twice_is_a_noop(con):
    cat = catalog()
    finalize_period(con, cat, "2026-10", AFTER_OCT, drafts=drafts())
    before = ledger_bytes(con)
    again = finalize_period(con, cat, "2026-10", datetime(2026, 11, 9, tzinfo=UTC), drafts=drafts())
    assert again.noop and again.already_finalized == 3
    assert ledger_bytes(con) == before


def test_rerated_drafts_never_change_a_finalized_invoice(con):
    cat = catalog()
    finalize_period(con, cat, "2026-10", AFTER_OCT, drafts=drafts())
    frozen = json.dumps(invoices_with_ledger(con, "2026-10", drafts=drafts()))
    before = ledger_bytes(con)
    # a later close re-rates October with more usage: same invoice ids, other amounts
    rerated = drafts(calls=500, tokens=99000)
    finalize_period(con, cat, "2026-10", AFTER_OCT, drafts=rerated)
    assert ledger_bytes(con) == before
    assert json.dumps(invoices_with_ledger(con, "2026-10", drafts=rerated)) == frozen


def test_invoices_with_ledger_shows_numbers_statuses_and_the_remaining_drafts(con):
    cat = catalog()
    october = drafts()
    only_acme = {"period": "2026-10", "invoices": october["invoices"][:1]}
    finalize_period(con, cat, "2026-10", AFTER_OCT, drafts=only_acme)
    doc = invoices_with_ledger(con, "2026-10", drafts=october)
    got = [(i["customer_id"], i["status"], i["number"]) for i in doc["invoices"]]
    assert got == [
        ("acme", "finalized", "MB-2026-000001"),
        ("beta", "draft", None),
        ("tokyo", "draft", None),
    ]
    assert doc["invoices"][0]["lines"] == october["invoices"][0]["lines"]
    only = invoices_with_ledger(con, "2026-10", customer_id="acme", drafts=october)
    assert [i["customer_id"] for i in only["invoices"]] == ["acme"]
    # the rest is finalized later and continues the sequence
    result = finalize_period(con, cat, "2026-10", AFTER_OCT, drafts=october)
    assert [n for _, n in result.numbered] == ["MB-2026-000002", "MB-2026-000003"]


def test_a_draft_with_a_new_id_for_a_finalized_subscription_stays_hidden(con):
    cat = catalog()
    finalize_period(con, cat, "2026-10", AFTER_OCT, drafts=drafts())
    changed = drafts()
    changed["invoices"][0]["invoice_id"] = "inv_other"
    doc = invoices_with_ledger(con, "2026-10", drafts=changed)
    assert [i["status"] for i in doc["invoices"]] == ["finalized"] * 3
    assert finalize_period(con, cat, "2026-10", AFTER_OCT, drafts=changed).noop


def test_void_adds_a_status_row_and_keeps_the_original(con):
    cat = catalog()
    result = finalize_period(con, cat, "2026-10", AFTER_OCT, drafts=drafts())
    invoice_id, number = result.numbered[1]
    invoices_before = con.execute("SELECT * FROM meterbook_ledger.invoices ORDER BY ALL").fetchall()
    void_invoice(con, invoice_id, "customer disputed the usage", datetime(2026, 11, 20, tzinfo=UTC))
    assert (
        con.execute("SELECT * FROM meterbook_ledger.invoices ORDER BY ALL").fetchall()
        == invoices_before
    )
    changes = con.execute(
        "SELECT status, reason FROM meterbook_ledger.invoice_status_changes WHERE invoice_id = ? ORDER BY changed_at",
        [invoice_id],
    ).fetchall()
    assert changes == [("finalized", None), ("void", "customer disputed the usage")]
    assert invoice_status(con, invoice_id) == "void"
    doc = invoices_with_ledger(con, "2026-10", drafts=drafts())
    voided = next(i for i in doc["invoices"] if i["invoice_id"] == invoice_id)
    assert (voided["status"], voided["number"]) == ("void", number)
    with pytest.raises(FinalizeError, match="already void"):
        void_invoice(con, invoice_id, "again", datetime(2026, 11, 21, tzinfo=UTC))
    # the voided number is not reused: the sequence stays gapless
    finalize_period(
        con, cat, "2026-11", datetime(2026, 12, 5, tzinfo=UTC), drafts=drafts("2026-11")
    )
    assert numbers(con) == [f"MB-2026-{i:06d}" for i in range(1, 7)]


def test_void_refuses_drafts_and_unknown_ids_and_needs_a_reason(con):
    finalize_period(con, catalog(), "2026-10", AFTER_OCT, drafts=drafts())
    with pytest.raises(FinalizeError, match="not finalized"):
        void_invoice(con, "inv_nope", "typo", AFTER_OCT)
    invoice_id = drafts()["invoices"][0]["invoice_id"]
    with pytest.raises(FinalizeError, match="needs a reason"):
        void_invoice(con, invoice_id, "  ", AFTER_OCT)


def test_finalize_refuses_a_period_that_has_not_ended(con):
    # beta is in Los Angeles: October ends there at 2026-11-01T07:00Z
    with pytest.raises(FinalizeError, match=r"beta.*ends 2026-11-01T07:00Z"):
        finalize_period(
            con, catalog(), "2026-10", datetime(2026, 11, 1, 6, 59, tzinfo=UTC), drafts=drafts()
        )
    assert numbers(con) == []
    finalize_period(
        con, catalog(), "2026-10", datetime(2026, 11, 1, 7, tzinfo=UTC), drafts=drafts()
    )
    assert len(numbers(con)) == 3


def test_finalize_refuses_an_invoice_that_does_not_add_up_and_writes_nothing(con):
    broken = drafts()
    broken["invoices"][2]["total"] = "5"
    with pytest.raises(FinalizeError, match=r"tokyo.*total is 5 but should be 4"):
        finalize_period(con, catalog(), "2026-10", AFTER_OCT, drafts=broken)
    wrong_tax = drafts()
    wrong_tax["invoices"][0]["tax_total"] = "0.00"
    wrong_tax["invoices"][0]["total"] = wrong_tax["invoices"][0]["subtotal"]
    wrong_tax["invoices"][0]["amount_due"] = wrong_tax["invoices"][0]["subtotal"]
    with pytest.raises(FinalizeError, match="tax_total"):
        finalize_period(con, catalog(), "2026-10", AFTER_OCT, drafts=wrong_tax)
    assert numbers(con) == []


def test_finalize_without_drafts_says_to_close_first(con):
    with pytest.raises(FinalizeError, match="run `meterbook close --period 2026-10` first"):
        finalize_period(
            con, catalog(), "2026-10", AFTER_OCT, drafts={"period": "2026-10", "invoices": []}
        )


def test_a_failure_inside_the_transaction_leaves_nothing(con, monkeypatch):
    from orchestration.billing import finalize as module

    record = module._record_finalization

    def explode(*args):
        record(*args)  # every insert done, COMMIT not yet
        raise RuntimeError("disk full")

    monkeypatch.setattr(module, "_record_finalization", explode)
    with pytest.raises(RuntimeError, match="disk full"):
        finalize_period(con, catalog(), "2026-10", AFTER_OCT, drafts=drafts())
    assert all(rows == [] for rows in ledger_bytes(con).values())
    monkeypatch.undo()
    result = finalize_period(con, catalog(), "2026-10", AFTER_OCT, drafts=drafts())
    assert result.numbered[0][1] == "MB-2026-000001"


def test_frozen_document_is_the_draft_with_number_and_status(con):
    october = drafts()
    finalize_period(con, catalog(), "2026-10", AFTER_OCT, drafts=october)
    text = con.execute(
        "SELECT document FROM meterbook_ledger.invoices WHERE customer_id = 'tokyo'"
    ).fetchone()[0]
    expected = {**october["invoices"][2], "number": "MB-2026-000003", "status": "finalized"}
    assert json.loads(text) == expected
    assert list(json.loads(text)) == list(expected)  # same key order as the draft
    lines = con.execute(
        "SELECT kind, meter, amount, position FROM meterbook_ledger.invoice_lines l "
        "JOIN meterbook_ledger.invoices i USING (invoice_id) WHERE i.customer_id = 'acme' ORDER BY position"
    ).fetchall()
    assert [(k, m, str(a.normalize()), p) for k, m, a, p in lines] == [
        ("usage", "api_calls", "1.2", 0),
        ("usage", "tokens", "9", 1),
        ("usage", "tokens", "0", 2),
        ("fixed_fee", None, "49", 3),
    ]


def test_grace_window_and_close_warning():
    cat = catalog(grace_days=3)
    # the latest zone is Los Angeles: October ends at 07:00Z (PDT), and DST ends that very
    # day, so grace (3 local days later) ends at 08:00Z (PST)
    window = period_window(cat, "2026-10", datetime(2026, 11, 4, 7, 59, tzinfo=UTC))
    assert window.ends_at == datetime(2026, 11, 1, 7, tzinfo=UTC)
    assert window.grace_ends_at == datetime(2026, 11, 4, 8, tzinfo=UTC)
    assert not window.past_grace
    assert close_warning(cat, "2026-10", datetime(2026, 11, 4, 7, 59, tzinfo=UTC), 3) is None
    late = datetime(2026, 11, 4, 8, tzinfo=UTC)
    warning = close_warning(cat, "2026-10", late, 2)
    assert "past its grace period" in warning and "meterbook finalize --period 2026-10" in warning
    assert close_warning(cat, "2026-10", late, 0) is None
    assert period_window(cat, "2026-12", late).ends_at == datetime(2027, 1, 1, 8, tzinfo=UTC)
