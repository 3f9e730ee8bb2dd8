"""A stateful stand-in for the Stripe API on 127.0.0.1, for tests only.

It keeps customers, invoices and invoice items; follows Stripe's documented idempotency rules
(same key and same request: the stored response is replayed with `Idempotent-Replayed: true`;
same key, other request: 400 `idempotency_error`; injected faults and requests that fail
validation store nothing); answers metadata searches and filtered lists; finalizes (total =
sum of items), voids, deletes drafts; and lets a test pay an invoice (which gives it a payment
intent and a charge) or fail a payment.

Credit notes and refunds, with the rules of Stripe's API reference (2024-04-10) that matter:
- a credit note (custom lines only: quantity x unit_amount, never negative, total > 0) goes
  on an open, uncollectible or paid invoice, and all of an invoice's credit notes total at
  most the invoice's total;
- on an open (or uncollectible) invoice it lowers amount_due and amount_remaining, never below
  zero, and takes no refund, credit_amount or out_of_band_amount (those settle a paid
  invoice). Credited down to zero, the invoice becomes `paid` with amount_paid 0: the double's
  reading of Stripe, which marks an invoice with nothing left to collect paid;
- on a paid invoice, refund + refund_amount + credit_amount + out_of_band_amount must equal
  the credit note's total; a linked refund must be of that invoice's charge and not linked yet;
- a refund (of a payment intent or a charge) is at most what is paid less earlier refunds.

Every request is checked against Stripe's OpenAPI description first; a violation is recorded
in `violations` and answered with a 400, so a test sees it twice.

Faults, by the number of the request (1-based, counting every request received):
`429`, `500` (answered instead of executing; `500_final` adds `Stripe-Should-Retry: false`),
`hang` (executed, then the answer is delayed past the client's timeout), `die_before` /
`die_after` (the server stops answering from then on, before or after executing that
request; the connection is closed unanswered).
`revive()` brings it back with its state. `search_lag` hides objects from search until
`index_search()` (Stripe's search trails writes by up to a minute);
`expire_idempotency_keys()` forgets keys (Stripe keeps them 24 hours).
"""

from __future__ import annotations

import contextlib
import copy
import json
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from stripe_openapi import OpenApiSpec, coerce, decode_form


@dataclass
class Recorded:
    number: int
    method: str
    path: str
    params: dict
    idempotency_key: str | None
    status: int | None = None  # None: no answer was sent


@dataclass
class _Answer:
    status: int
    body: dict
    headers: dict = field(default_factory=dict)


class StripeFailure(Exception):
    def __init__(self, status: int, error_type: str, message: str, code: str | None = None):
        self.status, self.error_type, self.message, self.code = status, error_type, message, code
        super().__init__(message)


_QUERY_CLAUSE = re.compile(r"^metadata\['([^'\\]+)'\]:'((?:[^'\\]|\\.)*)'$")


class StripeDouble:
    def __init__(self, spec: OpenApiSpec | None, api_key: str, *, hang_seconds: float = 0.6):
        self.spec = spec
        self.api_key = api_key
        self.hang_seconds = hang_seconds
        self.clock: Callable[[], int] = lambda: 1_790_000_000
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.reset()

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> str:
        double = self

        class Handler(_Handler):
            stripe = double

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self.url

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def reset(self) -> None:
        """Forget everything (objects, keys, log, faults): a new Stripe account."""
        with self._lock:
            self.customers: dict[str, dict] = {}
            self.invoices: dict[str, dict] = {}
            self.items: dict[str, dict] = {}
            self.credit_notes: dict[str, dict] = {}
            self.refunds: dict[str, dict] = {}
            self.charges: dict[str, dict] = {}
            self.keys: dict[str, tuple[tuple, _Answer]] = {}
            self.log: list[Recorded] = []
            self.violations: list[str] = []
            self.faults: dict[int, str] = {}
            self.rejections: list[tuple[Callable[[Recorded], bool], str]] = []
            self.dead = False
            self.search_lag = False
            self._searchable: set[str] = set()
            self._ids = 0

    # -- test controls -------------------------------------------------------------------

    def inject(self, request_number: int, fault: str) -> None:
        assert fault in ("429", "500", "500_final", "hang", "die_before", "die_after"), fault
        self.faults[request_number] = fault

    def reject(self, predicate: Callable[[Recorded], bool], message: str) -> None:
        """Answer matching requests with a 400 invalid_request_error (a business-rule refusal)."""
        self.rejections.append((predicate, message))

    def revive(self) -> None:
        with self._lock:
            self.dead = False
            self.faults.clear()

    def expire_idempotency_keys(self) -> None:
        with self._lock:
            self.keys.clear()

    def snapshot(self) -> dict:
        """The account's state (objects, keys, log), for `restore`: a test that needs the same
        starting point many times builds it once."""
        with self._lock:
            return copy.deepcopy({name: getattr(self, name) for name in _STATE})

    def restore(self, snapshot: dict) -> None:
        with self._lock:
            for name, value in copy.deepcopy(snapshot).items():
                setattr(self, name, value)
            self.faults, self.dead = {}, False

    def index_search(self) -> None:
        with self._lock:
            self._searchable |= set(self.customers) | set(self.invoices)

    def pay(self, invoice_id: str) -> None:
        with self._lock:
            invoice = self.invoices[invoice_id]
            assert invoice["status"] in ("open", "uncollectible"), invoice["status"]
            paid = invoice["amount_remaining"]
            invoice.update(status="paid", amount_paid=paid, amount_remaining=0)
            if paid > 0:
                self._charge(invoice, paid)
            invoice["attempt_count"] += 1
            invoice["next_payment_attempt"] = None
            invoice["status_transitions"]["paid_at"] = self.clock()

    def fail_payment(self, invoice_id: str, next_attempt: int | None) -> None:
        with self._lock:
            invoice = self.invoices[invoice_id]
            invoice["attempt_count"] += 1
            invoice["attempted"] = True
            invoice["next_payment_attempt"] = next_attempt

    def mark_uncollectible(self, invoice_id: str) -> None:
        with self._lock:
            invoice = self.invoices[invoice_id]
            invoice["status"] = "uncollectible"
            invoice["status_transitions"]["marked_uncollectible_at"] = self.clock()

    # -- what tests look at --------------------------------------------------------------

    def posts(self) -> list[Recorded]:
        return [r for r in self.log if r.method == "POST"]

    def invoices_for(self, our_invoice_id: str) -> list[dict]:
        return [
            inv
            for inv in self.invoices.values()
            if inv["metadata"].get("meterbook_invoice_id") == our_invoice_id
        ]

    def items_of(self, stripe_invoice_id: str) -> list[dict]:
        return [item for item in self.items.values() if item["invoice"] == stripe_invoice_id]

    def credit_notes_for(self, stripe_invoice_id: str) -> list[dict]:
        return [cn for cn in self.credit_notes.values() if cn["invoice"] == stripe_invoice_id]

    def refunds_for(self, stripe_invoice_id: str) -> list[dict]:
        charge = self.invoices[stripe_invoice_id]["charge"]
        return [refund for refund in self.refunds.values() if refund["charge"] == charge]

    # -- handling one request ------------------------------------------------------------

    def handle(self, method: str, target: str, headers, body: str) -> _Answer | None:
        """The answer to send, or None to close the connection without one."""
        parts = urlsplit(target)
        with self._lock:
            record = Recorded(len(self.log) + 1, method, parts.path, {}, None)
            self.log.append(record)
            fault = self.faults.get(record.number)
            if self.dead or fault == "die_before":
                self.dead = True
                return None
            answer = self._answer(record, parts.query, headers, body, fault)
            record.status = answer.status
            if fault == "die_after":
                self.dead = True
                record.status = None
                return None
        if fault == "hang":
            time.sleep(self.hang_seconds)
        return answer

    def _answer(self, record: Recorded, query: str, headers, body: str, fault) -> _Answer:
        if headers.get("Authorization") != f"Bearer {self.api_key}":
            presented = (headers.get("Authorization") or "").removeprefix("Bearer ")
            # Hostile on purpose: real Stripe masks the key; the client must redact it anyway.
            return _error(401, "invalid_request_error", f"Invalid API Key provided: {presented}")
        problems = self.spec.check(record.method, record.path, query, body) if self.spec else []
        if problems:
            self.violations.extend(problems)
            return _error(400, "invalid_request_error", "; ".join(problems), "openapi")
        record.params = self._params(record, query, body)
        record.idempotency_key = headers.get("Idempotency-Key")
        if fault == "429":
            return _error(429, "invalid_request_error", "Too many requests", "rate_limit")
        if fault in ("500", "500_final"):
            answer = _error(500, "api_error", "Something went wrong on Stripe's end")
            if fault == "500_final":  # Stripe says a retry would not help
                answer.headers["Stripe-Should-Retry"] = "false"
            return answer
        key = record.idempotency_key if record.method == "POST" else None
        if key is not None and key in self.keys:
            return self._replay(record, key)
        executed = self._execute(record)
        # A snapshot: a replay must show the object as it was then, not as it is now.
        answer = _Answer(executed.status, json.loads(json.dumps(executed.body)))
        if key is not None:
            self.keys[key] = ((record.method, record.path, _canonical(record.params)), answer)
        return answer

    def _params(self, record: Recorded, query: str, body: str) -> dict:
        operation = self.spec.operation(record.method, record.path) if self.spec else None
        raw = decode_form(body if record.method == "POST" else query)
        if record.method == "POST" and operation:
            schema = operation["requestBody"]["content"]["application/x-www-form-urlencoded"]
            return coerce(raw, schema["schema"])
        if operation:
            declared = {p["name"]: p["schema"] for p in operation.get("parameters", [])}
            return {k: coerce(v, declared.get(k, {})) for k, v in raw.items()}
        return raw

    def _replay(self, record: Recorded, key: str) -> _Answer:
        fingerprint, stored = self.keys[key]
        if fingerprint != (record.method, record.path, _canonical(record.params)):
            return _error(
                400,
                "idempotency_error",
                "Keys for idempotent requests can only be used with the same parameters "
                "they were first used with.",
            )
        return _Answer(stored.status, stored.body, {"Idempotent-Replayed": "true"})

    def _execute(self, record: Recorded) -> _Answer:
        for predicate, message in self.rejections:
            if predicate(record):
                return _error(400, "invalid_request_error", message)
        try:
            return _Answer(200, self._route(record))
        except StripeFailure as exc:
            return _error(exc.status, exc.error_type, exc.message, exc.code)

    def _route(self, r: Recorded) -> dict:
        m, p, params = r.method, r.path, r.params
        routes: list[tuple[str, str, Callable[..., dict]]] = [
            ("POST", r"/v1/customers", self._create_customer),
            ("GET", r"/v1/customers/search", lambda prm: self._search(self.customers, prm)),
            ("POST", r"/v1/invoices", self._create_invoice),
            ("GET", r"/v1/invoices/search", lambda prm: self._search(self.invoices, prm)),
            ("GET", r"/v1/invoices/(?P<id>[^/]+)", self._get_invoice),
            ("DELETE", r"/v1/invoices/(?P<id>[^/]+)", self._delete_invoice),
            ("POST", r"/v1/invoices/(?P<id>[^/]+)/finalize", self._finalize),
            ("POST", r"/v1/invoices/(?P<id>[^/]+)/void", self._void),
            ("POST", r"/v1/invoiceitems", self._create_item),
            ("GET", r"/v1/invoiceitems", self._list_items),
            ("POST", r"/v1/credit_notes", self._create_credit_note),
            ("GET", r"/v1/credit_notes", self._list_credit_notes),
            ("GET", r"/v1/credit_notes/(?P<id>[^/]+)", self._get_credit_note),
            ("POST", r"/v1/refunds", self._create_refund),
            ("GET", r"/v1/refunds", self._list_refunds),
        ]
        for method, pattern, action in routes:
            matched = re.fullmatch(pattern, p)
            if method == m and matched:
                return action(params, **matched.groupdict())
        raise StripeFailure(404, "invalid_request_error", f"Unrecognized request URL ({m}: {p})")

    # -- the resources -------------------------------------------------------------------

    def _new_id(self, prefix: str) -> str:
        self._ids += 1
        return f"{prefix}_dbl{self._ids:06d}"

    def _create_customer(self, params: dict) -> dict:
        customer = {
            "id": self._new_id("cus"),
            "object": "customer",
            "created": self.clock(),
            "livemode": False,
            "name": params.get("name"),
            "email": params.get("email"),
            "metadata": dict(params.get("metadata") or {}),
        }
        self.customers[customer["id"]] = customer
        return customer

    def _create_invoice(self, params: dict) -> dict:
        customer = params.get("customer")
        if customer not in self.customers:
            raise StripeFailure(
                400, "invalid_request_error", f"No such customer: '{customer}'", "resource_missing"
            )
        method = params.get("collection_method", "charge_automatically")
        days = params.get("days_until_due")
        if method == "send_invoice" and days is None and params.get("due_date") is None:
            raise StripeFailure(400, "invalid_request_error", "send_invoice needs a due date")
        if method == "charge_automatically" and days is not None:
            raise StripeFailure(400, "invalid_request_error", "days_until_due needs send_invoice")
        invoice = _blank_invoice(self._new_id("in"), self.clock(), params, method)
        self.invoices[invoice["id"]] = invoice
        return invoice

    def _invoice(self, stripe_id: str) -> dict:
        if stripe_id not in self.invoices:
            raise StripeFailure(
                404, "invalid_request_error", f"No such invoice: '{stripe_id}'", "resource_missing"
            )
        return self.invoices[stripe_id]

    def _get_invoice(self, params: dict, id: str) -> dict:
        return self._invoice(id)

    def _delete_invoice(self, params: dict, id: str) -> dict:
        invoice = self._invoice(id)
        if invoice["status"] != "draft":
            raise StripeFailure(400, "invalid_request_error", "Only drafts can be deleted")
        del self.invoices[id]
        for item_id in [k for k, item in self.items.items() if item["invoice"] == id]:
            del self.items[item_id]
        return {"id": id, "object": "invoice", "deleted": True}

    def _create_item(self, params: dict) -> dict:
        invoice = self._invoice(params.get("invoice", ""))
        if invoice["status"] != "draft":
            raise StripeFailure(400, "invalid_request_error", "Invoice is no longer a draft")
        if invoice["customer"] != params["customer"]:
            raise StripeFailure(400, "invalid_request_error", "Invoice of another customer")
        if params.get("currency") != invoice["currency"] or not isinstance(
            params.get("amount"), int
        ):
            raise StripeFailure(400, "invalid_request_error", "amount/currency do not fit")
        item = {
            "id": self._new_id("ii"),
            "object": "invoiceitem",
            "customer": params["customer"],
            "invoice": invoice["id"],
            "amount": params["amount"],
            "currency": params["currency"],
            "description": params.get("description"),
            "period": params.get("period"),
            "discountable": params.get("discountable", True),
            "metadata": dict(params.get("metadata") or {}),
            "livemode": False,
        }
        self.items[item["id"]] = item
        return item

    def _list_items(self, params: dict) -> dict:
        return _page(self.items, params, ("invoice", "customer"), "/v1/invoiceitems")

    def _finalize(self, params: dict, id: str) -> dict:
        invoice = self._invoice(id)
        if invoice["status"] != "draft":
            raise StripeFailure(400, "invalid_request_error", "This invoice is already finalized")
        total = sum(item["amount"] for item in self.items_of(id))
        now = self.clock()
        invoice.update(subtotal=total, total=total, amount_due=max(total, 0))
        invoice.update(amount_remaining=max(total, 0), status="open", number=f"DBL-{id[-6:]}")
        if "auto_advance" in params:
            invoice["auto_advance"] = params["auto_advance"]
        invoice["status_transitions"]["finalized_at"] = now
        if invoice["collection_method"] == "send_invoice":
            invoice["due_date"] = now + 86400 * invoice["days_until_due"]
        if total <= 0:  # Stripe marks an invoice with nothing to collect paid at once
            invoice.update(status="paid", amount_remaining=0)
            invoice["status_transitions"]["paid_at"] = now
        return invoice

    def _void(self, params: dict, id: str) -> dict:
        invoice = self._invoice(id)
        if invoice["status"] not in ("open", "uncollectible"):
            raise StripeFailure(400, "invalid_request_error", f"Cannot void a {invoice['status']}")
        invoice.update(status="void", amount_remaining=0)
        invoice["status_transitions"]["voided_at"] = self.clock()
        return invoice

    def _search(self, objects: dict[str, dict], params: dict) -> dict:
        wanted = []
        for clause in params["query"].split(" AND "):
            matched = _QUERY_CLAUSE.match(clause.strip())
            if not matched:
                raise StripeFailure(400, "invalid_request_error", f"Unsupported query {clause!r}")
            value = re.sub(r"\\(.)", r"\1", matched.group(2))
            wanted.append((matched.group(1), value))
        found = [
            obj
            for obj_id, obj in objects.items()
            if (not self.search_lag or obj_id in self._searchable)
            and all(obj["metadata"].get(k) == v for k, v in wanted)
        ]
        limit = params.get("limit", 10)
        return {"object": "search_result", "data": found[:limit],
                "has_more": len(found) > limit, "next_page": None, "url": "/v1/search"}  # fmt: skip

    # -- payments, credit notes and refunds ----------------------------------------------

    def _charge(self, invoice: dict, amount: int) -> None:
        charge = {
            "id": self._new_id("ch"),
            "payment_intent": self._new_id("pi"),
            "amount": amount,
            "amount_refunded": 0,
            "currency": invoice["currency"],
        }
        self.charges[charge["id"]] = charge
        invoice.update(charge=charge["id"], payment_intent=charge["payment_intent"])

    def _create_credit_note(self, params: dict) -> dict:
        invoice = self._referenced_invoice(params.get("invoice"))
        if invoice["status"] not in ("open", "uncollectible", "paid"):
            raise _invalid(f"Credit notes cannot be issued on a {invoice['status']} invoice")
        lines = [_credit_note_line(line) for line in params.get("lines") or []]
        total = sum(line["amount"] for line in lines)
        if total <= 0:
            raise _invalid("A credit note must credit a positive amount")
        left = invoice["total"] - _credited(invoice)
        if total > left:
            raise _invalid(f"The credit note ({total}) exceeds what is left to credit ({left})")
        paid = invoice["status"] == "paid"
        if paid:
            refund = self._settle_paid(invoice, params, total)
        else:
            refund = None
            self._reduce_due(invoice, params, total)
        credit_note = _credit_note(self._new_id("cn"), self.clock(), invoice, params, lines)
        credit_note["type"] = "post_payment" if paid else "pre_payment"
        credit_note["refund"] = refund["id"] if refund else None
        self.credit_notes[credit_note["id"]] = credit_note
        return credit_note

    def _reduce_due(self, invoice: dict, params: dict, total: int) -> None:
        settling = [name for name in _SETTLING if name in params]
        if settling:
            raise _invalid(f"{', '.join(settling)}: only a paid invoice's credit is settled")
        if total > invoice["amount_remaining"]:
            remaining = invoice["amount_remaining"]
            raise _invalid(f"The credit note ({total}) exceeds the amount remaining ({remaining})")
        invoice["pre_payment_credit_notes_amount"] += total
        invoice["amount_due"] -= total
        invoice["amount_remaining"] -= total
        if invoice["amount_remaining"] == 0:
            invoice["status"] = "paid"
            invoice["status_transitions"]["paid_at"] = self.clock()

    def _settle_paid(self, invoice: dict, params: dict, total: int) -> dict | None:
        """Check that the settlement covers the total exactly; the refund it links or makes."""
        linked = self._linked_refund(invoice, params.get("refund"))
        amounts = [params.get(name, 0) for name in _SETTLING if name != "refund"]
        settled = sum(amounts) + (linked["amount"] if linked else 0)
        if settled != total:
            raise _invalid(
                f"The refund, credit and out of band amounts ({settled}) must equal the credit "
                f"note's total ({total})"
            )
        if params.get("refund_amount"):
            linked = self._refund(self._invoice_charge(invoice), params["refund_amount"], {})
        invoice["post_payment_credit_notes_amount"] += total
        return linked

    def _linked_refund(self, invoice: dict, refund_id: str | None) -> dict | None:
        if refund_id is None:
            return None
        refund = self.refunds.get(refund_id)
        if refund is None:
            raise _invalid(f"No such refund: '{refund_id}'", "resource_missing")
        if refund["charge"] != invoice["charge"]:
            raise _invalid(f"Refund {refund_id} is not a refund of this invoice's payment")
        if any(cn["refund"] == refund_id for cn in self.credit_notes.values()):
            raise _invalid(f"Refund {refund_id} is already linked to a credit note")
        return refund

    def _list_credit_notes(self, params: dict) -> dict:
        return _page(self.credit_notes, params, ("invoice", "customer"), "/v1/credit_notes")

    def _get_credit_note(self, params: dict, id: str) -> dict:
        if id not in self.credit_notes:
            message = f"No such credit note: '{id}'"
            raise StripeFailure(404, "invalid_request_error", message, "resource_missing")
        return self.credit_notes[id]

    def _create_refund(self, params: dict) -> dict:
        charge = self._refunded_charge(params)
        amount = params.get("amount", charge["amount"] - charge["amount_refunded"])
        return self._refund(charge, amount, params.get("metadata") or {})

    def _refund(self, charge: dict, amount: int, metadata: dict) -> dict:
        left = charge["amount"] - charge["amount_refunded"]
        if amount <= 0:
            raise _invalid("Invalid positive integer", "parameter_invalid_integer")
        if amount > left:
            raise _invalid(
                f"Refund amount ({amount}) is greater than unrefunded amount on charge ({left})"
            )
        charge["amount_refunded"] += amount
        refund = {
            "id": self._new_id("re"),
            "object": "refund",
            "amount": amount,
            "charge": charge["id"],
            "payment_intent": charge["payment_intent"],
            "currency": charge["currency"],
            "created": self.clock(),
            "metadata": dict(metadata),
            "reason": None,
            "status": "succeeded",
            "balance_transaction": None,
        }
        self.refunds[refund["id"]] = refund
        return refund

    def _refunded_charge(self, params: dict) -> dict:
        if ("charge" in params) == ("payment_intent" in params):
            raise _invalid("Refund one charge or one payment_intent")
        for charge in self.charges.values():
            if params.get("charge") == charge["id"]:
                return charge
            if params.get("payment_intent") == charge["payment_intent"]:
                return charge
        target = params.get("charge") or params.get("payment_intent")
        raise _invalid(f"No such payment: '{target}'", "resource_missing")

    def _invoice_charge(self, invoice: dict) -> dict:
        if invoice["charge"] is None:
            raise _invalid("This invoice has no payment to refund")
        return self.charges[invoice["charge"]]

    def _list_refunds(self, params: dict) -> dict:
        return _page(self.refunds, params, ("payment_intent", "charge"), "/v1/refunds")

    def _referenced_invoice(self, stripe_id: str | None) -> dict:
        if stripe_id not in self.invoices:
            raise _invalid(f"No such invoice: '{stripe_id}'", "resource_missing")
        return self.invoices[stripe_id]


# What settles a credit note on a paid invoice (and nothing may on an open one).
_SETTLING = ("refund", "refund_amount", "credit_amount", "out_of_band_amount")


def _invalid(message: str, code: str | None = None) -> StripeFailure:
    return StripeFailure(400, "invalid_request_error", message, code)


def _page(objects: dict[str, dict], params: dict, filters: tuple[str, ...], url: str) -> dict:
    """One page of a list endpoint: filtered, after `starting_after`, at most `limit`."""
    wanted = {f: params[f] for f in filters if f in params}
    found = [o for o in objects.values() if all(o.get(f) == v for f, v in wanted.items())]
    if "starting_after" in params:
        ids = [o["id"] for o in found]
        found = found[ids.index(params["starting_after"]) + 1 :]
    limit = params.get("limit", 10)
    return {"object": "list", "data": found[:limit], "has_more": len(found) > limit, "url": url}


def _credited(invoice: dict) -> int:
    return invoice["pre_payment_credit_notes_amount"] + invoice["post_payment_credit_notes_amount"]


def _credit_note_line(line: dict) -> dict:
    if line.get("type") != "custom_line_item":
        raise _invalid("The double credits custom_line_item lines only")
    quantity, unit_amount = line.get("quantity", 1), line.get("unit_amount")
    # Our reading of Stripe: a credit note's line credits, it cannot charge.
    if not isinstance(unit_amount, int) or unit_amount < 0 or quantity < 0:
        raise _invalid("A custom line needs a unit_amount and a quantity that are not negative")
    if not line.get("description"):
        raise _invalid("A custom line needs a description")
    return {
        "object": "credit_note_line_item",
        "type": "custom_line_item",
        "description": line["description"],
        "quantity": quantity,
        "unit_amount": unit_amount,
        "amount": quantity * unit_amount,
    }


def _credit_note(stripe_id: str, now: int, invoice: dict, params: dict, lines: list) -> dict:
    total = sum(line["amount"] for line in lines)
    return {
        "id": stripe_id,
        "object": "credit_note",
        "created": now,
        "effective_at": now,
        "livemode": False,
        "customer": invoice["customer"],
        "invoice": invoice["id"],
        "currency": invoice["currency"],
        "number": f"{invoice['number']}-CN-{stripe_id[-6:]}",
        "status": "issued",
        "amount": total,
        "subtotal": total,
        "total": total,
        "amount_shipping": 0,
        "discount_amount": 0,
        "discount_amounts": [],
        "tax_amounts": [],
        "lines": {
            "object": "list",
            "data": [dict(line, id=f"cnli_{stripe_id[3:]}_{i}") for i, line in enumerate(lines)],
            "has_more": False,
            "url": f"/v1/credit_notes/{stripe_id}/lines",
        },
        "memo": params.get("memo"),
        "metadata": dict(params.get("metadata") or {}),
        "reason": params.get("reason"),
        "out_of_band_amount": params.get("out_of_band_amount"),
        "pdf": f"https://double.invalid/{stripe_id}.pdf",
    }


def _blank_invoice(stripe_id: str, now: int, params: dict, method: str) -> dict:
    return {
        "id": stripe_id,
        "object": "invoice",
        "created": now,
        "livemode": False,
        "customer": params["customer"],
        "currency": params.get("currency", "usd"),
        "status": "draft",
        "auto_advance": params.get("auto_advance", True),
        "collection_method": method,
        "days_until_due": params.get("days_until_due"),
        "due_date": None,
        "description": params.get("description"),
        "metadata": dict(params.get("metadata") or {}),
        "number": None,
        "subtotal": 0,
        "total": 0,
        "amount_due": 0,
        "amount_paid": 0,
        "amount_remaining": 0,
        "pre_payment_credit_notes_amount": 0,
        "post_payment_credit_notes_amount": 0,
        "payment_intent": None,
        "charge": None,
        "attempt_count": 0,
        "attempted": False,
        "next_payment_attempt": None,
        "status_transitions": {
            "finalized_at": None,
            "paid_at": None,
            "voided_at": None,
            "marked_uncollectible_at": None,
        },
    }


# What `snapshot` keeps: every object, key and request, not the faults or rejections.
_STATE = (
    "customers", "invoices", "items", "credit_notes", "refunds", "charges", "keys", "log",
    "violations", "_searchable", "_ids",
)  # fmt: skip


def _canonical(params: dict) -> str:
    return json.dumps(params, sort_keys=True, default=str)


def _error(status: int, error_type: str, message: str, code: str | None = None) -> _Answer:
    error = {"type": error_type, "message": message}
    if code:
        error["code"] = code
    return _Answer(status, {"error": error})


class _Handler(BaseHTTPRequestHandler):
    stripe: StripeDouble
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; without this, Nagle + delayed ACK add 40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format, *args):  # noqa: A002 - silence the default stderr log
        pass

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        answer = self.stripe.handle(self.command, self.path, self.headers, body)
        if answer is None:
            self.close_connection = True
            return
        payload = json.dumps(answer.body).encode()
        self.send_response(answer.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Request-Id", f"req_dbl{len(self.stripe.log):06d}")
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.end_headers()
        # The client may have given up waiting (a `hang` fault).
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(payload)

    do_GET = do_POST = do_DELETE = _serve
