"""Invoice documents: escaped HTML with tiers, totals and a daily chart; PDF and a screenshot."""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from close_fixtures import catalog, drafts

import orchestration.billing.documents.files  # noqa: F401 - patched below
from orchestration.billing import documents
from orchestration.billing.documents import (
    DailyPoint,
    chromium_path,
    render_documents,
    render_invoice_html,
    screenshot,
    usage_chart_svg,
)
from orchestration.billing.finalize import finalize_period, void_invoice
from orchestration.billing.ledger import invoices_with_ledger
from orchestration.sql import connect

NOV5 = datetime(2026, 11, 5, tzinfo=UTC)
NEEDS_CHROMIUM = pytest.mark.skipif(
    chromium_path() is None,
    reason="chromium is not installed (apt-get install -y chromium): no PDF or screenshot check",
)


def october():
    doc = drafts()
    acme = doc["invoices"][0]
    tokens = acme["lines"][1]
    tokens["tiers"] = [
        {
            "tier": 1,
            "from": "0",
            "up_to": "1000",
            "quantity": "1000",
            "unit_price": "0.002",
            "flat_fee": "1.00",
            "amount": "3.00",
        },
        {
            "tier": 2,
            "from": "1000",
            "up_to": None,
            "quantity": "3500",
            "unit_price": "0.0017142857",
            "flat_fee": "0",
            "amount": "6.00",
        },
    ]
    tokens["description"] = "LLM tokens (large) <script>alert('x')</script>"
    tokens["quantity"] = "4500.000000000000"
    return doc


@pytest.fixture
def con(tmp_path):
    con = connect(tmp_path / "warehouse.duckdb")
    con.execute("CREATE SCHEMA marts")
    con.execute(
        "CREATE TABLE marts.fct_daily_meter_usage (usage_date DATE, billing_customer_id VARCHAR, "
        "meter_code VARCHAR, group_key JSON, event_count BIGINT, daily_quantity DECIMAL(38, 12))"
    )
    rows = []
    for day in range(31):
        when = date(2026, 10, 1) + timedelta(days=day)
        rows.append([when, "acme", "api_calls", None, day % 5, Decimal(day % 5)])
        rows.append(
            [when, "acme", "tokens", json.dumps({"model": "large"}), 1, Decimal(100 + 7 * day)]
        )
        rows.append([when, "acme", "tokens", json.dumps({"model": "small"}), 1, Decimal(50)])
    rows.append([date(2026, 9, 30), "acme", "api_calls", None, 1, Decimal(999)])  # outside
    con.executemany("INSERT INTO marts.fct_daily_meter_usage VALUES (?, ?, ?, ?, ?, ?)", rows)
    yield con
    con.close()


def test_html_escapes_every_text_and_shows_lines_tiers_and_totals():
    cat = catalog()
    invoice = october()["invoices"][0]
    page = render_invoice_html(invoice, "2026-10", cat.customer("acme"), "")
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "Acme &lt;Corp&gt; &amp; &quot;Sons&quot;" in page
    assert "Tier 1 (0 to 1000): 1000 × 0.002 + flat fee 1" in page
    assert "Tier 2 (1000 to ∞): 3500 × 0.0017142857" in page
    assert ">4500<" in page  # quantities without trailing zeros
    assert "2026-10-01 to 2026-10-31" in page  # the exclusive end shown as the last day
    assert "Tax (20% of subtotal)" in page
    assert f"USD {invoice['amount_due']}" in page
    assert "Draft invoice" in page


def test_chart_bars_follow_the_daily_quantities():
    start, end = date(2026, 10, 1), date(2026, 11, 1)
    points = [
        DailyPoint(date(2026, 10, 1), Decimal(5)),
        DailyPoint(date(2026, 10, 31), Decimal(10)),
    ]
    svg = usage_chart_svg("Calls <&>", points, start, end)
    assert svg.count("<rect") == 2
    assert 'height="66.0"' in svg and 'height="33.0"' in svg  # 10 is the full plot height
    assert "Calls &lt;&amp;&gt;: peak 10 a day" in svg
    empty = usage_chart_svg("Calls", [], start, end)
    assert "<rect" not in empty and "no usage in this period" in empty


def test_documents_follow_the_lifecycle(con, tmp_path):
    cat = catalog()
    out = tmp_path / "documents"
    paths = render_documents(con, cat, "2026-10", out, document=october(), pdf=False)
    assert sorted(p.name for p in paths) == sorted(
        f"draft-{i['invoice_id']}.html" for i in october()["invoices"]
    )
    acme = (out / "2026-10" / f"draft-{october()['invoices'][0]['invoice_id']}.html").read_text()
    assert acme.count("<svg") == 2 and "peak 3 a day" not in acme
    assert "LLM tokens: peak 360 a day" in acme  # 100 + 7*30 large + 50 small, same day
    assert "API calls: peak 4 a day" in acme  # September's 999 is outside the period

    finalize_period(con, cat, "2026-10", NOV5, drafts=october())
    doc = invoices_with_ledger(con, "2026-10", drafts=october())
    paths = render_documents(con, cat, "2026-10", out, document=doc, pdf=False)
    names = sorted(p.name for p in paths)
    assert names == ["MB-2026-000001.html", "MB-2026-000002.html", "MB-2026-000003.html"]
    assert sorted(p.name for p in (out / "2026-10").iterdir()) == names  # drafts removed
    issued = (out / "2026-10" / "MB-2026-000001.html").read_bytes()
    assert b"Invoice MB-2026-000001" in issued

    # late usage changes the daily mart, not the issued document
    con.execute("UPDATE marts.fct_daily_meter_usage SET daily_quantity = daily_quantity * 10")
    render_documents(con, cat, "2026-10", out, document=doc, pdf=False)
    assert (out / "2026-10" / "MB-2026-000001.html").read_bytes() == issued

    void_invoice(con, doc["invoices"][0]["invoice_id"], "duplicate", NOV5)
    doc = invoices_with_ledger(con, "2026-10", drafts=october())
    paths = render_documents(con, cat, "2026-10", out, document=doc, pdf=False)
    assert "MB-2026-000001-void.html" in {p.name for p in paths}
    assert (out / "2026-10" / "MB-2026-000001.html").read_bytes() == issued
    assert 'class="badge void"' in (out / "2026-10" / "MB-2026-000001-void.html").read_text()


def test_no_daily_mart_means_no_chart(tmp_path):
    bare = connect(tmp_path / "bare.duckdb")
    paths = render_documents(
        bare, catalog(), "2026-10", tmp_path / "d", document=october(), pdf=False
    )
    assert "<svg" not in paths[0].read_text()
    bare.close()


def test_pdf_true_without_chromium_is_a_clear_error(con, tmp_path, monkeypatch):
    monkeypatch.setattr(documents.files, "chromium_path", lambda: None)
    with pytest.raises(RuntimeError, match="apt-get install chromium"):
        render_documents(con, catalog(), "2026-10", tmp_path / "d", document=october(), pdf=True)


@NEEDS_CHROMIUM
def test_finalized_documents_print_to_pdf_and_look_right(con, tmp_path):
    cat = catalog()
    finalize_period(con, cat, "2026-10", NOV5, drafts=october())
    doc = invoices_with_ledger(con, "2026-10", drafts=october())
    doc["invoices"] = doc["invoices"][:1]
    paths = render_documents(con, cat, "2026-10", tmp_path / "documents", document=doc)
    pdf = next(p for p in paths if p.suffix == ".pdf")
    assert pdf.read_bytes().startswith(b"%PDF-")
    html_path = next(p for p in paths if p.suffix == ".html")
    png = screenshot(html_path, tmp_path / "invoice.png", 1000, 1300)
    shown = os.environ.get("METERBOOK_KEEP_SCREENSHOT")  # to look at it by eye
    if shown:
        shutil.copy(png, shown)
    data = png.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 20_000  # a rendered page, not blank
