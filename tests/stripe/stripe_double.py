"""A stateful stand-in for the Stripe API on 127.0.0.1, for tests only.

It keeps customers, invoices and invoice items; follows Stripe's documented idempotency rules
(same key and same request: the stored response is replayed with `Idempotent-Replayed: true`;
same key, other request: 400 `idempotency_error`; injected faults and requests that fail
validation store nothing); answers metadata searches and filtered lists; finalizes (total =
sum of items), voids, deletes drafts; and lets a test pay an invoice or fail a payment.

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

    def index_search(self) -> None:
        with self._lock:
            self._searchable |= set(self.customers) | set(self.invoices)

    def pay(self, invoice_id: str) -> None:
        with self._lock:
            invoice = self.invoices[invoice_id]
            assert invoice["status"] in ("open", "uncollectible"), invoice["status"]
            invoice.update(status="paid", amount_paid=invoice["amount_due"], amount_remaining=0)
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
        items = [
            item
            for item in self.items.values()
            if all(item.get(f) == params[f] for f in ("invoice", "customer") if f in params)
        ]
        if "starting_after" in params:
            ids = [item["id"] for item in items]
            items = items[ids.index(params["starting_after"]) + 1 :]
        limit = params.get("limit", 10)
        page = items[:limit]
        return {"object": "list", "data": page, "has_more": len(items) > limit,
                "url": "/v1/invoiceitems"}  # fmt: skip

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
