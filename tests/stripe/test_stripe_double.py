"""The test tools are tested too: the OpenAPI check catches bad requests, and the double
follows Stripe's idempotency, search and finalization rules."""

from __future__ import annotations

import pytest
import requests
from stripe_fixtures import API_KEY
from stripe_openapi import coerce, decode_form

AUTH = {"Authorization": f"Bearer {API_KEY}"}


def post(double, path: str, data: dict, key: str | None = None) -> requests.Response:
    headers = dict(AUTH, **({"Idempotency-Key": key} if key else {}))
    return requests.post(double.url + path, data=data, headers=headers, timeout=5)


def get(double, path: str, params: dict | None = None) -> requests.Response:
    return requests.get(double.url + path, params=params, headers=AUTH, timeout=5)


def test_decode_form_nests_brackets_and_coerce_follows_the_schema():
    decoded = decode_form("amount=-5&metadata%5Bk%5D=v&expand[0]=a&expand[1]=b&flag=false")
    assert decoded == {
        "amount": "-5",
        "metadata": {"k": "v"},
        "expand": {"0": "a", "1": "b"},
        "flag": "false",
    }
    schema = {
        "type": "object",
        "properties": {
            "amount": {"type": "integer"},
            "expand": {"type": "array", "items": {"type": "string"}},
            "flag": {"type": "boolean"},
        },
    }
    assert coerce(decoded, schema)["amount"] == -5
    assert coerce(decoded, schema)["expand"] == ["a", "b"]
    assert coerce(decoded, schema)["flag"] is False


@pytest.mark.parametrize(
    ("method", "path", "query", "body", "complaint"),
    [
        ("POST", "/v1/invoiceitems", "", "customer=c&amount=1.5", "body amount"),
        ("POST", "/v1/invoiceitems", "", "customer=c&colour=red", "colour"),
        ("POST", "/v1/invoiceitems", "", "amount=1", "customer"),
        ("POST", "/v1/invoices", "", "collection_method=by_pigeon", "collection_method"),
        ("POST", "/v1/invoices", "", "auto_advance=maybe", "auto_advance"),
        ("POST", "/v1/invoiceitems", "", "customer=c&period[start]=1", "end"),
        ("GET", "/v1/customers/search", "", "", "query"),
        ("GET", "/v1/invoiceitems", "invoice=in_1&colour=red", "", "colour"),
        ("GET", "/v1/invoiceitems", "limit=ten", "", "limit"),
        ("POST", "/v1/invoices/in_1/pay_twice", "", "", "no such operation"),
        ("PATCH", "/v1/invoices", "", "", "no such operation"),
    ],
)
def test_openapi_check_catches_what_stripe_would_refuse(
    stripe_openapi, method, path, query, body, complaint
):
    problems = stripe_openapi.check(method, path, query, body)
    assert problems and complaint in " ".join(problems)


def test_openapi_check_accepts_a_conforming_request(stripe_openapi):
    body = (
        "customer=cus_1&invoice=in_1&currency=jpy&amount=-1930&discountable=false"
        "&period[start]=1790000000&period[end]=1790086400&metadata[meterbook_line_id]=l%3A1"
    )
    assert stripe_openapi.check("POST", "/v1/invoiceitems", "", body) == []
    assert stripe_openapi.check("GET", "/v1/invoices/in_1", "", "") == []
    query = "query=metadata%5B%27k%27%5D%3A%27v%27&limit=10"
    assert stripe_openapi.check("GET", "/v1/invoices/search", query, "") == []


def test_double_records_violations_and_answers_400(stripe_double):
    response = post(stripe_double, "/v1/customers", {"colour": "red"})
    assert response.status_code == 400
    assert stripe_double.violations
    stripe_double.violations.clear()  # expected here; the fixture fails on any left over


def test_idempotency_same_key_same_body_replays_other_body_is_refused(stripe_double):
    first = post(stripe_double, "/v1/customers", {"name": "A"}, key="k1")
    again = post(stripe_double, "/v1/customers", {"name": "A"}, key="k1")
    assert first.status_code == again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert len(stripe_double.customers) == 1
    other = post(stripe_double, "/v1/customers", {"name": "B"}, key="k1")
    assert other.status_code == 400
    assert other.json()["error"]["type"] == "idempotency_error"
    stripe_double.expire_idempotency_keys()
    assert post(stripe_double, "/v1/customers", {"name": "B"}, key="k1").status_code == 200
    assert len(stripe_double.customers) == 2


def test_a_replay_shows_the_object_as_it_was_created(stripe_double):
    customer = post(stripe_double, "/v1/customers", {"name": "A"}).json()["id"]
    created = post(stripe_double, "/v1/invoices", {"customer": customer}, key="inv").json()
    post(stripe_double, f"/v1/invoices/{created['id']}/finalize", {})
    replay = post(stripe_double, "/v1/invoices", {"customer": customer}, key="inv").json()
    assert replay["status"] == "draft"
    # an empty invoice is paid at once on finalization
    assert get(stripe_double, f"/v1/invoices/{created['id']}").json()["status"] == "paid"


def test_injected_faults_store_nothing_under_the_key(stripe_double):
    stripe_double.inject(1, "500")
    stripe_double.inject(2, "429")
    assert post(stripe_double, "/v1/customers", {"name": "A"}, key="k").status_code == 500
    assert post(stripe_double, "/v1/customers", {"name": "A"}, key="k").status_code == 429
    third = post(stripe_double, "/v1/customers", {"name": "A"}, key="k")
    assert third.status_code == 200 and "Idempotent-Replayed" not in third.headers
    assert len(stripe_double.customers) == 1


def test_die_after_executes_then_stops_answering_until_revived(stripe_double):
    stripe_double.inject(1, "die_after")
    with pytest.raises(requests.ConnectionError):
        post(stripe_double, "/v1/customers", {"name": "A"}, key="k")
    with pytest.raises(requests.ConnectionError):
        get(stripe_double, "/v1/invoiceitems")
    assert len(stripe_double.customers) == 1
    stripe_double.revive()
    replay = post(stripe_double, "/v1/customers", {"name": "A"}, key="k")
    assert replay.headers["Idempotent-Replayed"] == "true"


def test_search_by_metadata_with_lag(stripe_double):
    stripe_double.search_lag = True
    post(stripe_double, "/v1/customers", {"name": "A", "metadata[our]": "o'k"})
    query = {"query": "metadata['our']:'o\\'k'"}
    assert get(stripe_double, "/v1/customers/search", query).json()["data"] == []
    stripe_double.index_search()
    found = get(stripe_double, "/v1/customers/search", query).json()["data"]
    assert [c["name"] for c in found] == ["A"]
    bad = get(stripe_double, "/v1/customers/search", {"query": "name:'A' OR x"})
    assert bad.status_code == 400


def test_finalize_totals_items_void_and_list_filter(stripe_double):
    customer = post(stripe_double, "/v1/customers", {"name": "A"}).json()["id"]
    invoice = post(stripe_double, "/v1/invoices", {"customer": customer, "currency": "kwd"}).json()
    for amount in (14295, -1930):
        item = {"customer": customer, "invoice": invoice["id"], "currency": "kwd", "amount": amount}
        assert post(stripe_double, "/v1/invoiceitems", item).status_code == 200
    listed = get(stripe_double, "/v1/invoiceitems", {"invoice": invoice["id"], "limit": 1}).json()
    assert len(listed["data"]) == 1 and listed["has_more"] is True
    final = post(stripe_double, f"/v1/invoices/{invoice['id']}/finalize", {}).json()
    assert (final["status"], final["total"], final["amount_due"]) == ("open", 12365, 12365)
    late = {"customer": customer, "invoice": invoice["id"], "currency": "kwd", "amount": 1}
    assert post(stripe_double, "/v1/invoiceitems", late).status_code == 400
    voided = post(stripe_double, f"/v1/invoices/{invoice['id']}/void", {}).json()
    assert voided["status"] == "void"
    assert post(stripe_double, f"/v1/invoices/{invoice['id']}/void", {}).status_code == 400


def test_wrong_key_is_401(stripe_double):
    response = requests.post(
        stripe_double.url + "/v1/customers",
        headers={"Authorization": "Bearer sk_test_wrong"},
        timeout=5,
    )
    assert response.status_code == 401


def open_invoice(double, amount: int) -> str:
    customer = post(double, "/v1/customers", {"name": "A"}).json()["id"]
    invoice = post(double, "/v1/invoices", {"customer": customer, "currency": "usd"}).json()["id"]
    item = {"customer": customer, "invoice": invoice, "currency": "usd", "amount": amount}
    post(double, "/v1/invoiceitems", item)
    post(double, f"/v1/invoices/{invoice}/finalize", {})
    return invoice


def credit(double, invoice: str, *amounts: int, **settlement) -> requests.Response:
    data = {"invoice": invoice, **settlement}
    for i, amount in enumerate(amounts):
        data |= {f"lines[{i}][type]": "custom_line_item", f"lines[{i}][description]": "x",
                 f"lines[{i}][quantity]": 1, f"lines[{i}][unit_amount]": amount}  # fmt: skip
    return post(double, "/v1/credit_notes", data)


def test_credit_notes_lower_an_open_invoice_within_what_it_owes(stripe_double):
    invoice = open_invoice(stripe_double, 1000)
    assert credit(stripe_double, invoice, 300, 100).status_code == 200
    assert credit(stripe_double, invoice, -1).status_code == 400  # a line never charges
    assert credit(stripe_double, invoice, 601).status_code == 400  # more than owed
    assert credit(stripe_double, invoice, 100, out_of_band_amount=100).status_code == 400
    state = get(stripe_double, f"/v1/invoices/{invoice}").json()
    assert (state["status"], state["amount_remaining"], state["amount_due"]) == ("open", 600, 600)
    assert credit(stripe_double, invoice, 600).status_code == 200
    state = get(stripe_double, f"/v1/invoices/{invoice}").json()
    assert (state["status"], state["amount_remaining"], state["amount_paid"]) == ("paid", 0, 0)
    listed = get(stripe_double, "/v1/credit_notes", {"invoice": invoice, "limit": 1}).json()
    assert len(listed["data"]) == 1 and listed["has_more"] is True
    one = listed["data"][0]
    assert get(stripe_double, f"/v1/credit_notes/{one['id']}").json() == one


def test_a_paid_invoice_takes_credit_notes_settled_exactly_and_refunds_up_to_the_payment(
    stripe_double,
):
    invoice = open_invoice(stripe_double, 1000)
    stripe_double.pay(invoice)
    payment = stripe_double.invoices[invoice]["payment_intent"]
    assert credit(stripe_double, invoice, 300).status_code == 400  # nothing settles it
    assert credit(stripe_double, invoice, 300, out_of_band_amount=200).status_code == 400
    refund = post(stripe_double, "/v1/refunds", {"payment_intent": payment, "amount": 400})
    assert refund.status_code == 200
    too_much = post(stripe_double, "/v1/refunds", {"payment_intent": payment, "amount": 601})
    assert "greater than unrefunded amount" in too_much.json()["error"]["message"]
    linked = credit(stripe_double, invoice, 400, refund=refund.json()["id"])
    assert linked.status_code == 200 and linked.json()["refund"] == refund.json()["id"]
    assert credit(stripe_double, invoice, 400, refund=refund.json()["id"]).status_code == 400
    assert credit(stripe_double, invoice, 600, out_of_band_amount=600).status_code == 200
    assert credit(stripe_double, invoice, 1, out_of_band_amount=1).status_code == 400  # all gone
    listed = get(stripe_double, "/v1/refunds", {"payment_intent": payment}).json()["data"]
    assert [r["id"] for r in listed] == [refund.json()["id"]]
    assert stripe_double.refunds_for(invoice) == listed
