"""The month so far: the page of one customer, and the folder of pages kept in step with the
published snapshot (SPEC 9)."""

from __future__ import annotations

import copy
import os
import re

from orchestration.billing.documents.chart import _frame
from orchestration.billing.documents.month_so_far import (
    page_name,
    render_month_so_far,
    write_month_so_far_pages,
)


def customer(customer_id="acme", name="Acme Corp", draft=True, quantity="123456") -> dict:
    daily = [
        {"date": "2026-10-01", "quantity": "1000"},
        {"date": "2026-10-02", "quantity": "0.1"},
        {"date": "2026-10-20", "quantity": "122455.9"},
    ]
    return {
        "customer_id": customer_id,
        "name": name,
        "currency": "USD",
        "entitlements": {},
        "usage": {
            "customer_id": customer_id,
            "as_of": "2026-10-20T13:00:00Z",
            "subscriptions": [
                {
                    "subscription_id": f"sub_{customer_id}_pro",
                    "plan": "pro",
                    "plan_name": "Pro",
                    "currency": "USD",
                    "period_start": "2026-10-01",
                    "period_end": "2026-11-01",
                    "meters": [
                        {
                            "meter": "tokens",
                            "name": "LLM tokens",
                            "quantity": quantity,
                            "event_count": 42,
                            "daily": daily,
                        },
                        {
                            "meter": "seats",
                            "name": "Seats",
                            "quantity": "0",
                            "event_count": 0,
                            "daily": [],
                        },
                    ],
                    "draft": _draft() if draft else None,
                }
            ],
        },
    }


def _draft() -> dict:
    return {
        "invoice_id": "inv_draft_acme_2026_10",
        "currency": "USD",
        "subtotal": "12.00",
        "tax": "2.40",
        "total": "14.40",
        "lines": [
            {"kind": "usage", "description": "LLM tokens", "quantity": "123.456", "amount": "12.00"}
        ],
    }


def snapshot(*customers: dict) -> dict:
    return {
        "format": 1,
        "as_of": "2026-10-20T13:00:00Z",
        "published_at": "2026-10-20T13:01:00Z",
        "features": {},
        "customers": {c["customer_id"]: c for c in customers},
    }


def cells(page: str) -> list[str]:
    return re.findall(r'<td class="num">([^<]*)</td>', page)


def test_page_shows_quantities_draft_amounts_and_a_chart():
    page = render_month_so_far(customer())

    assert "<title>Acme Corp: the month so far</title>" in page
    assert "2026-10-20 13:00:00 UTC" in page
    assert "2026-10-01 to 2026-10-31" in page  # the last day, as invoices show it
    assert cells(page)[:4] == ["123456", "42", "0", "0"]  # tokens, then seats
    assert "USD 12.00" in page and "USD 2.40" in page and "USD 14.40" in page
    assert "123.456" in page  # the draft line's quantity
    # one chart: seats had no usage, so no picture of an empty period
    assert page.count('src="data:image/png;base64,') == 1
    assert "LLM tokens: peak 122455.9 a day" in page
    assert "No draft invoice yet" not in page


def test_no_draft_yet():
    page = render_month_so_far(customer(draft=False))

    assert "No draft invoice yet for this period" in page
    assert "USD" not in re.sub(r"billed in USD", "", page)  # no amounts at all


def test_customer_without_subscriptions_or_usage_yet():
    entry = customer()
    entry["usage"] = {"customer_id": "acme", "as_of": None, "subscriptions": []}

    page = render_month_so_far(entry)

    assert "No subscription in a current period" in page
    assert "no events ingested yet" in page


def test_names_from_the_catalog_are_escaped():
    entry = customer(name="<script>alert(1)</script>")
    entry["usage"]["subscriptions"][0]["meters"][0]["name"] = "<b>tokens</b>"

    page = render_month_so_far(entry)

    assert "<script>" not in page and "<b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;: the month so far" in page
    assert "&lt;b&gt;tokens&lt;/b&gt;" in page


def test_figures_are_decimals_never_floats():
    entry = customer(quantity="0.1")
    sub = entry["usage"]["subscriptions"][0]
    sub["meters"][1]["quantity"] = "12345678901234567890.5"  # past a float's 17 digits
    sub["draft"].update(subtotal="0.30", tax="0.1", total="0.40")
    sub["draft"]["lines"] = [
        {"kind": "usage", "description": "a", "quantity": "0.1", "amount": "0.10"},
        {"kind": "usage", "description": "b", "quantity": "0.2", "amount": "0.20"},
    ]

    page = render_month_so_far(entry)

    assert cells(page)[0] == "0.1"
    assert cells(page)[2] == "12345678901234567890.5"
    assert "USD 0.30" in page and "USD 0.10" in page and "USD 0.40" in page
    assert "peak 122455.9 a day" in page  # not 122455.90000000001
    for artefact in ("0000001", "9999999", "e+", "e-0"):
        assert artefact not in re.sub(r"data:image/png;base64,[^\"]+", "", page)


def test_file_names_are_one_to_one_and_safe():
    names = [page_name(i) for i in ("acme", "org:acme", "org_acme", "org~3Aacme", "a/b", "..")]

    assert names[0] == "acme.html"  # the ids files.py keeps read the same
    assert len(set(names)) == len(names)
    assert all("/" not in n and ":" not in n for n in names)
    long_names = page_name(":" * 200), page_name(":" * 199 + "x")
    assert long_names[0] != long_names[1] and all(len(n) <= 200 for n in long_names)


def test_writer_writes_keeps_and_removes_pages(tmp_path):
    acme, org = customer("acme"), customer("org:globex", name="Globex")
    written = write_month_so_far_pages(tmp_path, snapshot(acme, org))

    folder = tmp_path / "usage"
    assert sorted(written) == sorted([folder / "acme.html", folder / "org~3Aglobex.html"])
    assert "Globex: the month so far" in (folder / "org~3Aglobex.html").read_text("utf-8")

    # an unchanged page is not touched: not rewritten, not even replaced by an equal copy
    page = folder / "acme.html"
    os.utime(page, ns=(1_000_000_000, 1_000_000_000))
    before = page.stat()
    changed = copy.deepcopy(org)
    changed["usage"]["subscriptions"][0]["meters"][0]["quantity"] = "200000"
    written = write_month_so_far_pages(tmp_path, snapshot(acme, changed))

    assert written == [folder / "org~3Aglobex.html"]
    after = page.stat()
    assert (after.st_mtime_ns, after.st_ino) == (before.st_mtime_ns, before.st_ino)
    assert "200000" in (folder / "org~3Aglobex.html").read_text("utf-8")

    # a customer gone from the snapshot loses its page; nothing temporary is left behind
    assert write_month_so_far_pages(tmp_path, snapshot(acme)) == []
    assert sorted(p.name for p in folder.iterdir()) == ["acme.html"]


def test_pages_are_drawn_period_by_period(tmp_path):
    # more period shapes than chart.py keeps axes for, the customers of each far apart in id
    # order: each period's axes must still be drawn once, not once a customer
    customers = []
    for number in range(34):
        entry = customer(f"c{number:02d}")
        sub = entry["usage"]["subscriptions"][0]
        day = 1 + number % 17
        sub["period_start"], sub["period_end"] = f"2026-10-{day:02d}", f"2026-11-{day:02d}"
        sub["meters"][0]["daily"] = [{"date": sub["period_start"], "quantity": "5"}]
        customers.append(entry)
    _frame.cache_clear()

    write_month_so_far_pages(tmp_path, snapshot(*customers))

    assert _frame.cache_info().misses == 17
