"""The price backtest's comparison and its files (SPEC 10), on small invented invoices.

Every expected figure below is worked out by hand in the comments beside it.
"""

from __future__ import annotations

import csv
import json
import re
from decimal import Decimal

import pytest

from orchestration.billing.backtest.report import (
    INVOICE_COLUMNS,
    LINE_COLUMNS,
    PLAN_COLUMNS,
    render_html,
    text_summary,
    to_json,
    write_all,
    write_csv,
)
from orchestration.billing.backtest.results import compare, percent_change


def line(kind, amount, meter=None, fee_code=None, group=None, start=None, end=None, **extra):
    return {
        "line_id": extra.pop("line_id", f"li_{kind}_{meter}_{fee_code}_{amount}"),
        "kind": kind,
        "meter": meter,
        "fee_code": fee_code,
        "group": group,
        "description": extra.pop("description", f"{kind} {meter or fee_code or ''}".strip()),
        "period_start": start,
        "period_end": end,
        "amount": amount,
        **extra,
    }


def invoice(side, customer, period, currency, plan, subtotal, lines=()):
    start = f"{period}-01"
    return {
        "invoice_id": f"inv_{side}_{customer}_{period}",
        "customer_id": customer,
        "subscription_id": f"sub_{customer}",
        "currency": currency,
        "period": period,
        "plan_id": plan,
        "period_start": start,
        "period_end": start,
        "subtotal": subtotal,
        "discount_total": "0",
        "tax_total": "0",
        "total": subtotal,
        "lines": list(lines),
    }


def usage(amount, **extra):
    extra.setdefault("group", {"model": "large", "region": "eu"})
    return line("usage", amount, meter="tokens", **extra)


def platform(amount, start="2026-09-01", end="2026-10-01", **extra):
    return line("fixed_fee", amount, fee_code="platform", start=start, end=end, **extra)


def baseline_invoices():
    return [
        # acme: plan starter under the current catalog, pro under the candidate
        invoice("b", "acme", "2026-08", "USD", "starter", "100.00", [usage("60.00"), platform("40.00")]),
        invoice("b", "acme", "2026-09", "USD", "starter", "60.00", [
            usage("30.00"),
            platform("40.00"),
            line("discount", "-10.00", fee_code="welcome"),  # only in the baseline
        ]),
        invoice("b", "freebie", "2026-08", "USD", "free", "0.00"),
        invoice("b", "globex", "2026-08", "USD", "starter", "20.00", [platform("20.00")]),
        invoice("b", "able", "2026-08", "USD", "starter", "10.00", [platform("10.00")]),
        # a plan change in September: two segments of the same fee, told apart by their dates
        invoice("b", "initech", "2026-09", "USD", "starter", "40.00", [
            platform("15.00", "2026-09-01", "2026-09-16", line_id="li_b1"),
            platform("25.00", "2026-09-16", "2026-10-01", line_id="li_b2",
                     description="Platform <fee>"),
        ]),
        invoice("b", "tokyo", "2026-08", "JPY", "jp", "800", [
            line("usage", "500", meter="api_calls"), line("fixed_fee", "300", fee_code="base")]),
        invoice("b", "tokyo", "2026-09", "JPY", "jp", "800", [
            line("usage", "500", meter="api_calls"), line("fixed_fee", "300", fee_code="base")]),
        invoice("b", "osaka", "2026-09", "JPY", "jp", "1200", [line("fixed_fee", "1200", fee_code="base")]),
    ]  # fmt: skip


def candidate_invoices():
    return [
        invoice("c", "acme", "2026-08", "USD", "pro", "112.50", [usage("72.50"), platform("40.00")]),
        invoice("c", "acme", "2026-09", "USD", "pro", "75.00", [usage("35.00"), platform("40.00")]),
        invoice("c", "freebie", "2026-08", "USD", "free", "0.00"),
        invoice("c", "globex", "2026-08", "USD", "starter", "10.00", [platform("10.00")]),
        invoice("c", "able", "2026-08", "USD", "starter", "15.00", [platform("15.00")]),
        # the segments in the other order, with other line ids
        invoice("c", "initech", "2026-09", "USD", "starter", "45.00", [
            platform("30.00", "2026-09-16", "2026-10-01", line_id="li_c9",
                     description="Platform <fee>"),
            platform("15.00", "2026-09-01", "2026-09-16", line_id="li_c8"),
        ]),
        # a subscription only the candidate has
        invoice("c", "newco", "2026-09", "USD", "pro", "49.99", [platform("49.99")]),
        invoice("c", "tokyo", "2026-08", "JPY", "jp", "801", [
            line("usage", "501", meter="api_calls"), line("fixed_fee", "300", fee_code="base")]),
        invoice("c", "tokyo", "2026-09", "JPY", "jp", "799", [
            line("usage", "499", meter="api_calls"), line("fixed_fee", "300", fee_code="base")]),
        # osaka: dropped by the candidate
    ]  # fmt: skip


@pytest.fixture
def result():
    return compare(baseline_invoices(), candidate_invoices(), "2026-08", "2026-09")


@pytest.fixture
def document(result):
    return to_json(result)


def by_invoice(document):
    return {(row["customer_id"], row["period"]): row for row in document["invoices"]}


# ---------------------------------------------------------------- arithmetic


@pytest.mark.parametrize(
    ("difference", "baseline", "expected"),
    [
        ("12.50", "100.00", "12.50"),
        ("0.01", "8.00", "0.13"),  # 0.125 %: half-up, not half-even (0.12)
        ("-0.01", "8.00", "-0.13"),  # away from zero
        ("1", "3", "33.33"),
        ("2", "3", "66.67"),
        ("10.00", "-10.00", "100.00"),  # of |baseline|: a smaller discount is a rise
        ("0.00", "0.00", "0.00"),
        ("5.00", "0.00", None),
        ("-1200", "1200", "-100.00"),
    ],
)
def test_percent_is_half_up_of_the_baseline(difference, baseline, expected):
    got = percent_change(Decimal(difference), Decimal(baseline))
    assert (None if got is None else str(got)) == expected


def test_invoices_match_on_subscription_and_month(document):
    rows = by_invoice(document)
    # 9 baseline invoices, 8 candidate, newco only in the candidate, osaka only in the baseline
    assert len(rows) == 10
    assert rows[("acme", "2026-08")] == {
        "customer_id": "acme",
        "subscription_id": "sub_acme",
        "period": "2026-08",
        "currency": "USD",
        "baseline": "100.00",
        "candidate": "112.50",
        "difference": "12.50",
        "percent": "12.50",  # 12.50 / 100.00
    }
    # 75.00 - 60.00 = 15.00; 15 / 60 = 25 %
    acme_sep = rows[("acme", "2026-09")]
    assert (acme_sep["difference"], acme_sep["percent"]) == ("15.00", "25.00")
    # only in the candidate: 0 on the baseline side, no percentage
    newco = rows[("newco", "2026-09")]
    assert (newco["baseline"], newco["candidate"], newco["difference"]) == (
        "0.00",
        "49.99",
        "49.99",
    )
    assert newco["percent"] is None
    # 0 on both sides: "0.00"
    freebie = rows[("freebie", "2026-08")]
    assert (freebie["difference"], freebie["percent"]) == ("0.00", "0.00")
    # JPY keeps 0 digits; 1 / 800 = 0.125 % -> 0.13, -1 / 800 -> -0.13
    assert rows[("tokyo", "2026-08")] == {
        "customer_id": "tokyo",
        "subscription_id": "sub_tokyo",
        "period": "2026-08",
        "currency": "JPY",
        "baseline": "800",
        "candidate": "801",
        "difference": "1",
        "percent": "0.13",
    }
    assert rows[("tokyo", "2026-09")]["percent"] == "-0.13"
    # only in the baseline: the candidate dropped it
    osaka = rows[("osaka", "2026-09")]
    assert (osaka["candidate"], osaka["difference"], osaka["percent"]) == ("0", "-1200", "-100.00")


def test_invoices_are_sorted_by_period_customer_subscription(document):
    order = [(row["period"], row["customer_id"]) for row in document["invoices"]]
    assert order == [
        ("2026-08", "able"),
        ("2026-08", "acme"),
        ("2026-08", "freebie"),
        ("2026-08", "globex"),
        ("2026-08", "tokyo"),
        ("2026-09", "acme"),
        ("2026-09", "initech"),
        ("2026-09", "newco"),
        ("2026-09", "osaka"),
        ("2026-09", "tokyo"),
    ]


def test_currency_totals_never_add_two_currencies(document):
    assert document["currency_totals"] == {
        # 100.00 + 60.00 + 0.00 + 20.00 + 10.00 + 40.00 (+ newco 0.00)
        # 112.50 + 75.00 + 0.00 + 10.00 + 15.00 + 45.00 + 49.99
        "USD": {"baseline": "230.00", "candidate": "307.49", "difference": "77.49"},
        # 800 + 800 + 1200; 801 + 799 + 0
        "JPY": {"baseline": "2800", "candidate": "1600", "difference": "-1200"},
    }
    assert list(document["currency_totals"]) == ["JPY", "USD"]  # in code order


def test_lines_match_on_their_charge(result):
    lines = {
        inv.customer_id + " " + inv.period: inv.lines
        for inv in result.invoices
        if inv.customer_id in ("acme", "initech")
    }
    september = lines["acme 2026-09"]
    assert [(x.kind, str(x.baseline), str(x.candidate), str(x.difference)) for x in september] == [
        ("usage", "30.00", "35.00", "5.00"),
        ("fixed_fee", "40.00", "40.00", "0.00"),
        ("discount", "-10.00", "0.00", "10.00"),  # only in the baseline
    ]
    discount = september[2]
    assert (discount.in_baseline, discount.in_candidate, str(discount.percent)) == (
        True,
        False,
        "100.00",  # 10.00 of |-10.00|
    )
    assert september[0].group == '{"model":"large","region":"eu"}'  # canonical JSON
    assert str(september[0].percent) == "16.67"  # 5 / 30 = 16.666...
    # the plan change's two segments pair up by their dates, whatever the order and line ids
    segments = [
        (x.period_start, str(x.baseline), str(x.candidate), str(x.percent))
        for x in lines["initech 2026-09"]
    ]
    assert segments == [
        ("2026-09-01", "15.00", "15.00", "0.00"),
        ("2026-09-16", "25.00", "30.00", "20.00"),
    ]


def test_a_line_only_in_the_candidate_and_a_group_in_another_key_order():
    base = [invoice("b", "acme", "2026-10", "USD", "p", "1.00", [usage("1.00")])]
    reordered = usage("1.50", group={"region": "eu", "model": "large"})
    cand = [
        invoice("c", "acme", "2026-10", "USD", "p", "3.50", [reordered, platform("2.00")]),
    ]
    (inv,) = compare(base, cand, "2026-10", "2026-10").invoices
    assert [(x.kind, str(x.baseline), str(x.candidate), x.percent) for x in inv.lines] == [
        ("usage", "1.00", "1.50", Decimal("50.00")),
        ("fixed_fee", "0.00", "2.00", None),
    ]


def test_a_subscription_billed_in_another_currency_is_two_rows():
    base = [invoice("b", "acme", "2026-10", "USD", "p", "10.00")]
    cand = [invoice("c", "acme", "2026-10", "EUR", "p", "9.00")]
    rows = to_json(compare(base, cand, "2026-10", "2026-10"))["invoices"]
    assert [(r["currency"], r["baseline"], r["candidate"]) for r in rows] == [
        ("EUR", "0.00", "9.00"),
        ("USD", "10.00", "0.00"),
    ]


@pytest.mark.parametrize(
    ("baseline", "message"),
    [
        ([invoice("b", "a", "2026-12", "USD", "p", "1.00")], "outside the backtest's months"),
        ([invoice("b", "a", "2026-10", "USD", "p", "1.00")] * 2, "two invoices"),
        ([invoice("b", "a", "2026-10", "JPY", "p", "1.5")], "more than the currency's 0"),
    ],
)
def test_inputs_it_refuses(baseline, message):
    with pytest.raises(ValueError, match=message):
        compare(baseline, [], "2026-10", "2026-11", exponents={"JPY": 0})


def test_plans_and_months(document, result):
    plans = [
        (p["plan_id"], p["period"], p["currency"], p["invoices"], p["baseline"], p["candidate"],
         p["difference"], p["percent"])
        for p in document["plans"]
    ]  # fmt: skip
    assert plans == [
        ("free", "2026-08", "USD", 1, "0.00", "0.00", "0.00", "0.00"),
        ("jp", "2026-08", "JPY", 1, "800", "801", "1", "0.13"),
        # tokyo 800 -> 799, osaka 1200 -> 0: -1201 of 2000 = -60.05 %
        ("jp", "2026-09", "JPY", 2, "2000", "799", "-1201", "-60.05"),
        ("pro", "2026-09", "USD", 1, "0.00", "49.99", "49.99", None),  # the candidate's plan
        # acme (the baseline's plan starter, not pro), globex, able: 7.50 of 130.00 = 5.769 %
        ("starter", "2026-08", "USD", 3, "130.00", "137.50", "7.50", "5.77"),
        ("starter", "2026-09", "USD", 2, "100.00", "120.00", "20.00", "20.00"),
    ]
    months = [
        (m.currency, m.period, str(m.baseline), str(m.candidate)) for m in result.month_totals
    ]
    assert months == [
        ("JPY", "2026-08", "800", "801"),
        ("JPY", "2026-09", "2000", "799"),
        ("USD", "2026-08", "130.00", "137.50"),
        ("USD", "2026-09", "100.00", "169.99"),
    ]


def test_movers_per_currency_ties_by_customer(document):
    def brief(rows):
        return [(r["customer_id"], r["difference"]) for r in rows]

    usd, jpy = document["movers"]["USD"], document["movers"]["JPY"]
    # acme 12.50 + 15.00; able and initech tie at 5.00: by customer_id
    assert brief(usd["up"]) == [
        ("newco", "49.99"),
        ("acme", "27.50"),
        ("able", "5.00"),
        ("initech", "5.00"),
    ]
    assert brief(usd["down"]) == [("globex", "-10.00")]
    # tokyo +1 - 1 = 0 moves neither way
    assert (brief(jpy["up"]), brief(jpy["down"])) == ([], [("osaka", "-1200")])
    assert usd["up"][1] == {
        "customer_id": "acme",
        "invoices": 2,
        "baseline": "160.00",
        "candidate": "187.50",
        "difference": "27.50",
        "percent": "17.19",  # 27.50 / 160.00 = 17.1875 -> half-up
    }


def test_movers_keep_the_top_ten():
    base = [invoice("b", f"c{n:02d}", "2026-10", "USD", "p", "1.00") for n in range(12)]
    cand = [invoice("c", f"c{n:02d}", "2026-10", "USD", "p", f"{n + 2}.00") for n in range(12)]
    movers = compare(base, cand, "2026-10", "2026-10").movers["USD"]
    assert [m.customer_id for m in movers.up] == [f"c{n:02d}" for n in range(11, 1, -1)]
    assert movers.down == ()


# ---------------------------------------------------------------- the files


def test_json_has_spec_10_shape(document):
    assert list(document)[:4] == ["from", "to", "currency_totals", "invoices"]
    assert set(document) - {"from", "to", "currency_totals", "invoices"} == {
        "plans",
        "movers",
        "lines",
    }
    assert (document["from"], document["to"]) == ("2026-08", "2026-09")
    for total in document["currency_totals"].values():
        assert list(total) == ["baseline", "candidate", "difference"]
    for row in document["invoices"]:
        assert list(row) == [
            "customer_id",
            "subscription_id",
            "period",
            "currency",
            "baseline",
            "candidate",
            "difference",
            "percent",
        ]
        assert all(isinstance(row[k], str) for k in ("baseline", "candidate", "difference"))
    discount = next(x for x in document["lines"] if x["kind"] == "discount")
    assert discount["group"] is None and discount["fee_code"] == "welcome"
    tokens = next(x for x in document["lines"] if x["meter"] == "tokens")
    assert tokens["group"] == {"model": "large", "region": "eu"}
    json.dumps(document)  # nothing but JSON types


def test_csv_headers_and_rows(result, tmp_path):
    paths = write_csv(result, tmp_path)
    assert [p.name for p in paths] == ["invoices.csv", "lines.csv", "plans.csv"]
    tables = {p.stem: list(csv.reader(p.open(encoding="utf-8", newline=""))) for p in paths}
    assert tables["invoices"][0] == list(INVOICE_COLUMNS)
    assert tables["lines"][0] == list(LINE_COLUMNS)
    assert tables["plans"][0] == list(PLAN_COLUMNS)
    assert len(tables["invoices"]) == 1 + 10
    newco = next(row for row in tables["invoices"] if row[1] == "newco")
    assert newco == [
        "2026-09", "newco", "sub_newco", "USD", "", "pro", "", "inv_c_newco_2026-09",
        "0.00", "49.99", "49.99", "",
    ]  # fmt: skip
    discount = next(row for row in tables["lines"] if row[4] == "discount")
    assert discount == [
        "2026-09", "acme", "sub_acme", "USD", "discount", "", "welcome", "", "", "",
        "discount welcome", "true", "false", "-10.00", "0.00", "10.00", "100.00",
    ]  # fmt: skip
    tokens = next(row for row in tables["lines"] if row[5] == "tokens")
    assert tokens[7] == '{"model":"large","region":"eu"}'
    assert tables["plans"][2] == ["jp", "2026-08", "JPY", "1", "800", "801", "1", "0.13"]


def test_html_has_both_charts_and_every_table(result):
    html = render_html(result)
    images = re.findall(r'<img src="data:image/png;base64,[A-Za-z0-9+/=]+"', html)
    assert len(images) == 3  # revenue per month in JPY and in USD, the spread of change
    assert html.count('<figure class="revenue-chart"') == 2
    assert html.count('<figure class="spread-chart"') == 1
    assert "Revenue per month, USD" in html and "Revenue per month, JPY" in html
    invoices = html.split('<table class="rows invoices">')[1].split("</table>")[0]
    assert invoices.count("<tr class=") == 10
    assert '<td>sub_newco <span class="side">candidate only</span>' in invoices
    assert "<td>starter → pro</td>" in invoices  # acme's plan in each catalog
    assert '<td class="num change">+49.99</td>' in invoices
    assert '<td class="num change">n/a</td>' in invoices  # no percentage for newco
    plans = html.split('<table class="rows plans">')[1].split("</table>")[0]
    assert "<td>starter</td><td>2026-08</td><td>USD</td>" in plans
    assert ">+7.50</td>" in plans and ">+5.77</td>" in plans
    usd_up = html.split("<h3>USD</h3>")[1].split('<table class="rows movers-down">')[0]
    assert usd_up.index("<td>newco</td>") < usd_up.index("<td>acme</td>")
    # text from the invoices is escaped
    assert "Platform &lt;fee&gt;" in html and "Platform <fee>" not in html


def test_files_are_byte_identical_on_a_second_write(result, tmp_path):
    first = write_all(result, tmp_path / "one")
    again = compare(baseline_invoices(), candidate_invoices(), "2026-08", "2026-09")
    second = write_all(again, tmp_path / "two")
    assert sorted(first) == ["html", "invoices", "json", "lines", "plans"]
    assert [p.name for p in first.values()] == [
        "results.json",
        "invoices.csv",
        "lines.csv",
        "plans.csv",
        "report.html",
    ]
    for key, path in first.items():
        assert path.read_bytes() == second[key].read_bytes(), key
    assert json.loads(first["json"].read_text(encoding="utf-8")) == to_json(result)


def test_text_summary(result):
    assert text_summary(result) == (
        "Backtest 2026-08 to 2026-09: 10 invoices, 9 change"
        " (1 only in the candidate, 1 only in the baseline)\n"
        "  JPY: baseline 2800, candidate 1600, difference -1200 (-42.86%)\n"
        "    largest move down: osaka -1200 JPY (-100.00%)\n"
        "  USD: baseline 230.00, candidate 307.49, difference +77.49 (+33.69%)\n"
        "    largest move up: newco +49.99 USD\n"
        "    largest move down: globex -10.00 USD (-50.00%)\n"
    )


def test_nothing_to_compare(tmp_path):
    empty = compare([], [], "2026-10", "2026-10")
    assert to_json(empty) == {
        "from": "2026-10",
        "to": "2026-10",
        "currency_totals": {},
        "invoices": [],
        "plans": [],
        "movers": {},
        "lines": [],
    }
    paths = write_all(empty, tmp_path)
    assert "Nothing to draw." in paths["html"].read_text(encoding="utf-8")
    assert text_summary(empty) == "Backtest 2026-10 to 2026-10: 0 invoices, 0 change\n"
