"""Invoice documents: escaped HTML with tiers, totals and a daily chart; PDF and a screenshot.

The document's parts (quantities, terms, labels, the PDF page) are tested in
tests/billing/test_documents_*.py; here, the documents of a close month on disk."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import numpy
import pytest
from close_fixtures import catalog, drafts
from PIL import Image

import orchestration.billing.documents.files  # noqa: F401 - patched below
from orchestration.billing import documents
from orchestration.billing.documents import (
    DailyPoint,
    chromium_path,
    pdf_unavailable,
    render_documents,
    render_invoice_html,
    screenshot,
    usage_chart,
)
from orchestration.billing.documents.chart import BAR_COLOR
from orchestration.billing.documents.usage import DailyUsage
from orchestration.billing.finalize import finalize_period, void_invoice
from orchestration.billing.ledger import invoices_with_ledger
from orchestration.sql import connect

NOV5 = datetime(2026, 11, 5, tzinfo=UTC)
NEEDS_CHROMIUM = pytest.mark.skipif(
    chromium_path() is None,
    reason="chromium is not installed (apt-get install -y chromium): no screenshot check",
)
NEEDS_WEASYPRINT = pytest.mark.skipif(
    pdf_unavailable() is not None, reason=f"no PDF check: {pdf_unavailable()}"
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
    page = render_invoice_html(invoice, "2026-10", cat)
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page
    assert "Acme &lt;Corp&gt; &amp; &#34;Sons&#34;" in page
    assert "Tier 1 (0 to 1000): 1000 × 0.002 + flat fee 1" in page
    assert "Tier 2 (1000 to ∞): 3500 × 0.0017142857" in page
    assert ">4500<" in page  # quantities without trailing zeros
    assert "2026-10-01 to 2026-10-31" in page  # the exclusive end shown as the last day
    assert "Tax (20% of subtotal)" in page
    assert f"USD {invoice['amount_due']}" in page
    assert "Draft invoice" in page and "draft, not issued" in page


def _bar_pixels(chart) -> int:
    png = base64.b64decode(chart.png_data_uri.removeprefix("data:image/png;base64,"))
    blue = [int(BAR_COLOR[k : k + 2], 16) for k in (1, 3, 5)]
    pixels = numpy.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    return int((pixels == blue).all(axis=2).sum())


def test_chart_bars_follow_the_daily_quantities():
    start, end = date(2026, 10, 1), date(2026, 11, 1)
    half = usage_chart(
        "Calls <&>",
        [DailyPoint(date(2026, 10, 1), Decimal(5)), DailyPoint(date(2026, 10, 31), Decimal(10))],
        start,
        end,
    )
    full = usage_chart(
        "Calls",
        [DailyPoint(date(2026, 10, 1), Decimal(10)), DailyPoint(date(2026, 10, 31), Decimal(10))],
        start,
        end,
    )
    assert half.caption == "Calls <&>: peak 10 a day"  # escaped by the page, not here
    assert 0.70 < _bar_pixels(half) / _bar_pixels(full) < 0.80  # bars of 1/2 and 1 vs 1 and 1
    empty = usage_chart("Calls", [], start, end)
    assert empty.png_data_uri is None and empty.caption == "Calls: no usage in this period"
    outside = usage_chart("Calls", [DailyPoint(date(2026, 9, 30), Decimal(3))], start, end)
    assert outside.png_data_uri is None


def test_documents_follow_the_lifecycle(con, tmp_path):
    cat = catalog()
    out = tmp_path / "documents"
    paths = render_documents(con, cat, "2026-10", out, document=october(), pdf=False)
    assert sorted(p.name for p in paths) == sorted(
        f"draft-{i['invoice_id']}.html" for i in october()["invoices"]
    )
    acme = (out / "2026-10" / f"draft-{october()['invoices'][0]['invoice_id']}.html").read_text()
    # drafts are rebuilt by every close: their charts wait for the issued document
    assert "<img" not in acme and "charts are drawn when the invoice is issued" in acme

    finalize_period(con, cat, "2026-10", NOV5, drafts=october())
    doc = invoices_with_ledger(con, "2026-10", drafts=october())
    paths = render_documents(con, cat, "2026-10", out, document=doc, pdf=False)
    names = sorted(p.name for p in paths)
    assert names == ["MB-2026-000001.html", "MB-2026-000002.html", "MB-2026-000003.html"]
    assert sorted(p.name for p in (out / "2026-10").iterdir()) == names  # drafts removed
    issued = (out / "2026-10" / "MB-2026-000001.html").read_bytes()
    assert b"Invoice MB-2026-000001" in issued and b"acme" in issued
    text = issued.decode()
    assert text.count("<img") == 2 and "peak 3 a day" not in text
    assert "LLM tokens: peak 360 a day" in text  # 100 + 7*30 large + 50 small, same day
    assert "API calls: peak 4 a day" in text  # September's 999 is outside the period

    # late usage changes the daily mart, not the issued document
    con.execute("UPDATE marts.fct_daily_meter_usage SET daily_quantity = daily_quantity * 10")
    render_documents(con, cat, "2026-10", out, document=doc, pdf=False)
    assert (out / "2026-10" / "MB-2026-000001.html").read_bytes() == issued

    void_invoice(con, doc["invoices"][0]["invoice_id"], "duplicate", NOV5)
    doc = invoices_with_ledger(con, "2026-10", drafts=october())
    paths = render_documents(con, cat, "2026-10", out, document=doc, pdf=False)
    assert "MB-2026-000001-void.html" in {p.name for p in paths}
    assert (out / "2026-10" / "MB-2026-000001.html").read_bytes() == issued
    voided = (out / "2026-10" / "MB-2026-000001-void.html").read_text()
    assert 'class="badge void"' in voided and "Voided on</td><td>2026-11-05" in voided
    assert "Issue date</td><td>2026-11-05" in voided  # the original issue date stays


def test_no_daily_mart_means_no_chart(tmp_path):
    bare = connect(tmp_path / "bare.duckdb")
    paths = render_documents(
        bare, catalog(), "2026-10", tmp_path / "d", document=october(), pdf=False
    )
    assert "<img" not in paths[0].read_text()
    bare.close()


def test_pdf_true_without_weasyprint_is_a_clear_error(con, tmp_path, monkeypatch):
    monkeypatch.setattr(documents.files, "pdf_unavailable", lambda: "no Pango; apt-get install")
    with pytest.raises(RuntimeError, match="need WeasyPrint: no Pango; apt-get install"):
        render_documents(con, catalog(), "2026-10", tmp_path / "d", document=october(), pdf=True)


@NEEDS_WEASYPRINT
def test_missing_pdfs_are_completed_by_the_next_run(con, tmp_path, monkeypatch):
    monkeypatch.delenv("METERBOOK_PDF", raising=False)  # the suite's default is off
    cat, out = catalog(), tmp_path / "documents"
    finalize_period(con, cat, "2026-10", NOV5, drafts=october())
    doc = invoices_with_ledger(con, "2026-10", drafts=october())
    with monkeypatch.context() as no_pango:
        no_pango.setattr(documents.files, "pdf_unavailable", lambda: "no Pango")
        first = render_documents(con, cat, "2026-10", out, document=doc)
    assert (first.counts.html_written, first.counts.pdf_written) == (3, 0)
    assert first.counts.pdf_missing == 3 and "3 PDFs missing (no Pango)" in first.counts.summary()
    assert not list((out / "2026-10").glob("*.pdf"))
    monkeypatch.setenv("METERBOOK_PDF", "off")  # not asked: still missing, nothing printed
    assert render_documents(con, cat, "2026-10", out, document=doc).counts.pdf_missing == 3
    monkeypatch.delenv("METERBOOK_PDF")
    html_before = {p.name: p.read_bytes() for p in first}

    second = render_documents(con, cat, "2026-10", out, document=doc)
    counts = second.counts
    assert (counts.html_written, counts.pdf_written, counts.pdf_completed) == (0, 0, 3)
    assert counts.pdf_missing == 0
    pdfs = sorted(p.name for p in second if p.suffix == ".pdf")
    assert pdfs == ["MB-2026-000001.pdf", "MB-2026-000002.pdf", "MB-2026-000003.pdf"]
    assert {p.name: p.read_bytes() for p in second if p.suffix == ".html"} == html_before

    third = render_documents(con, cat, "2026-10", out, document=doc).counts
    assert (third.html_written, third.pdf_written, third.pdf_completed, third.pdf_missing) == (
        0,
        0,
        0,
        0,
    )


@NEEDS_WEASYPRINT
@NEEDS_CHROMIUM
def test_finalized_documents_print_to_pdf_and_look_right(con, tmp_path, monkeypatch):
    monkeypatch.delenv("METERBOOK_PDF", raising=False)  # the suite's default is off
    cat = catalog()
    finalize_period(con, cat, "2026-10", NOV5, drafts=october())
    doc = invoices_with_ledger(con, "2026-10", drafts=october())
    doc["invoices"] = doc["invoices"][:1]
    paths = render_documents(con, cat, "2026-10", tmp_path / "documents", document=doc)
    assert paths.counts.pdf_written == 1
    pdf = next(p for p in paths if p.suffix == ".pdf")
    assert pdf.read_bytes().startswith(b"%PDF-")
    html_path = next(p for p in paths if p.suffix == ".html")
    assert "Issue date</td><td>2026-11-05" in html_path.read_text()  # finalized_at, UTC
    png = screenshot(html_path, tmp_path / "invoice.png", 1000, 1300)
    shown = os.environ.get("METERBOOK_KEEP_SCREENSHOT")  # to look at it by eye
    if shown:
        shutil.copy(png, shown)
    data = png.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 20_000  # a rendered page, not blank


def test_without_the_nightly_daily_usage_charts_come_from_the_metered_events(tmp_path):
    # a workspace closed from the CLI alone has no fct_daily_meter_usage: the same days are
    # aggregated from the metered events as each meter aggregates them
    con = connect(tmp_path / "warehouse.duckdb")
    con.execute("CREATE SCHEMA intermediate")
    con.execute(
        "CREATE TABLE intermediate.int_events_metered (billing_customer_id VARCHAR, "
        "meter_code VARCHAR, aggregation VARCHAR, event_date DATE, event_ts TIMESTAMPTZ, "
        "group_key JSON, value DECIMAL(38, 12), text_value VARCHAR)"
    )
    rows = [
        ("acme", "calls", "count", "2026-10-01 10:00", None, None, None),
        ("acme", "calls", "count", "2026-10-01 11:00", None, None, None),
        ("acme", "users", "count_unique", "2026-10-01 10:00", None, None, "u1"),
        ("acme", "users", "count_unique", "2026-10-01 12:00", None, None, "u1"),
        ("acme", "level", "latest", "2026-10-02 09:00", None, Decimal("5"), None),
        ("acme", "level", "latest", "2026-10-02 23:00", None, Decimal("2"), None),
        ("acme", "gb", "sum", "2026-10-02 09:00", '{"r": "eu"}', Decimal("1.5"), None),
        ("acme", "gb", "sum", "2026-10-02 09:00", '{"r": "us"}', Decimal("2.25"), None),
        ("acme", "calls", "count", "2026-11-01 00:00", None, None, None),  # after the period
    ]
    con.executemany(
        "INSERT INTO intermediate.int_events_metered VALUES "
        "(?, ?, ?, cast(cast(? AS TIMESTAMPTZ) AS DATE), cast(? AS TIMESTAMPTZ), ?, ?, ?)",
        [(c, m, a, ts, ts, g, v, t) for c, m, a, ts, g, v, t in rows],
    )
    invoice = {"period_start": "2026-10-01", "period_end": "2026-11-01"}
    usage = DailyUsage.load(con, [invoice])
    con.close()
    day1, day2, end = date(2026, 10, 1), date(2026, 10, 2), date(2026, 11, 1)
    assert usage.points("acme", "calls", day1, end, True) == [DailyPoint(day1, Decimal(2))]
    assert usage.points("acme", "users", day1, end, False) == [DailyPoint(day1, Decimal(1))]
    assert usage.points("acme", "level", day1, end, False) == [DailyPoint(day2, Decimal(2))]
    assert usage.points("acme", "gb", day1, end, True) == [DailyPoint(day2, Decimal("3.75"))]
    assert usage.points("acme", "gb", day1, end, False) == [DailyPoint(day2, Decimal("2.25"))]
