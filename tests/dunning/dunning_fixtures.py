"""A small dunning world: a catalog, a warehouse with finalized invoices sent to Stripe, a fake
Stripe whose invoices a test pays or fails, and the real payment-status pull between them.

Days are simulated with an explicit `now` (the product's clock is `now_utc()`, which reads
METERBOOK_NOW; the end-to-end tests set that variable instead)."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import duckdb

from integrations.stripe.status import pull_payment_status
from orchestration.billing.dunning import (
    DunningOutbox,
    dunning_outbox_path,
    read_receivables,
    run_dunning,
)
from orchestration.catalog import load_catalog
from orchestration.sql import connect
from orchestration.warehouse.ledger import ensure_ledger_schema
from orchestration.warehouse.stripe import ensure_stripe_schema

PASSWORD = "smtp-Pw_7q!Zr2NeverInLogs"
PASSWORD_ENV = "METERBOOK_TEST_SMTP_PASSWORD"
# Stripe's due date of the send_invoice invoice, and the first days after it at 09:00 UTC
DUE = datetime(2026, 11, 15, 0, 0, tzinfo=UTC)
FINALIZED = datetime(2026, 11, 1, 0, 0, tzinfo=UTC)


def day(n: int, hour: int = 9) -> datetime:
    """`n` days after the due date, at `hour` UTC."""
    return DUE + timedelta(days=n, hours=hour)


CATALOG = """
customers:
  - {{id: acme, name: "Acme & Sons", currency: USD, email: "billing@acme.test",
     collection_method: send_invoice, days_until_due: 14}}
  - {{id: tokyo, name: Tokyo KK, currency: JPY, email: "ap@tokyo.test"}}
  - {{id: nomail, currency: USD}}
settings:
  seller: {{name: Meterbook Demo Inc.}}
  dunning:
    reminder_days: [1, 7, 14]
    final_notice_days: 30
    min_amount: "1.00"
    from: "Meterbook Billing <billing@meterbook.test>"
{smtp}
"""


def smtp_settings(port: int, *, security: str = "none", login: bool = False) -> str:
    text = f"  smtp: {{host: 127.0.0.1, port: {port}, security: {security}, timeout_seconds: 10"
    if login:
        text += f", username: billing@meterbook.test, password_env: {PASSWORD_ENV}"
    return text + "}"


def write_catalog(home: Path, smtp: str = "") -> Path:
    folder = home / "catalog"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "catalog.yaml").write_text(CATALOG.format(smtp=smtp))
    return folder


@dataclass(frozen=True)
class Invoice:
    invoice_id: str
    number: str
    customer_id: str
    currency: str
    exponent: int
    total: str  # the ledger's total = amount_due (no paid credits)
    collection_method: str

    @property
    def stripe_id(self) -> str:
        return f"in_{self.invoice_id}"

    @property
    def minor(self) -> int:
        return int(Decimal(self.total).scaleb(self.exponent))


ACME = Invoice("inv_acme_2026_10", "MB-2026-000001", "acme", "USD", 2, "162.72", "send_invoice")
TOKYO = Invoice(
    "inv_tokyo_2026_10", "MB-2026-000002", "tokyo", "JPY", 0, "7263", "charge_automatically"
)
NOMAIL = Invoice(
    "inv_nomail_2026_10", "MB-2026-000003", "nomail", "USD", 2, "50.00", "send_invoice"
)


class FakeStripe:
    """Stripe's invoices as `retrieve_invoice` returns them, changed by the test: a gateway for
    `pull_payment_status` (in process), and an HTTP server for the Stripe SDK (in a run)."""

    def __init__(self, invoices: list[Invoice]) -> None:
        self.requests_sent = 0
        self.invoices: dict[str, dict] = {}
        for invoice in invoices:
            self.invoices[invoice.stripe_id] = _stripe_invoice(invoice)
        self._server: ThreadingHTTPServer | None = None

    def retrieve_invoice(self, stripe_id: str) -> dict:
        self.requests_sent += 1
        return json.loads(json.dumps(self.invoices[stripe_id]))

    def pay(self, invoice: Invoice) -> None:
        found = self.invoices[invoice.stripe_id]
        found.update(status="paid", amount_paid=found["amount_due"], amount_remaining=0)
        found["attempt_count"] += 1

    def fail_charge(self, invoice: Invoice) -> None:
        self.invoices[invoice.stripe_id]["attempt_count"] += 1

    def void(self, invoice: Invoice) -> None:
        self.invoices[invoice.stripe_id].update(status="void", amount_remaining=0)

    # --- over HTTP, for the Stripe SDK of a Dagster run -------------------------------------

    def serve(self) -> str:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                stripe_id = self.path.rstrip("/").rsplit("/", 1)[-1]
                found = fake.invoices.get(stripe_id)
                body = json.dumps(found or {"error": {"type": "invalid_request_error"}}).encode()
                self.send_response(200 if found else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format, *args):  # noqa: A002 - quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def _stripe_invoice(invoice: Invoice) -> dict:
    send = invoice.collection_method == "send_invoice"
    return {
        "id": invoice.stripe_id,
        "object": "invoice",
        "currency": invoice.currency.lower(),
        "status": "open",
        "collection_method": invoice.collection_method,
        "total": invoice.minor,
        "amount_due": invoice.minor,
        "amount_paid": 0,
        "amount_remaining": invoice.minor,
        "attempt_count": 0,
        "next_payment_attempt": None,
        "due_date": int(DUE.timestamp()) if send else None,
        "hosted_invoice_url": f"https://invoice.stripe.test/i/{invoice.stripe_id}",
        "status_transitions": {"finalized_at": int(FINALIZED.timestamp())},
    }


def build_warehouse(path: Path, invoices: list[Invoice]) -> None:
    """Finalized invoices in the ledger, each mapped to its Stripe invoice (as a sync would)."""
    con = connect(path)
    try:
        ensure_ledger_schema(con)
        ensure_stripe_schema(con)
        for invoice in invoices:
            _insert(con, invoice)
    finally:
        con.close()


def _insert(con: duckdb.DuckDBPyConnection, invoice: Invoice) -> None:
    total = Decimal(invoice.total)
    con.execute(
        "INSERT INTO meterbook_ledger.invoices VALUES"
        " (?, ?, '2026-10', ?, ?, ?, ?, DATE '2026-10-01', DATE '2026-11-01',"
        "  ?, 0, 0, ?, 0, ?, ?, '{}')",
        [invoice.invoice_id, invoice.number, invoice.customer_id, f"sub_{invoice.customer_id}",
         invoice.currency, invoice.exponent, total, total, total, FINALIZED],
    )  # fmt: skip
    con.execute(
        "INSERT INTO meterbook_ledger.invoice_status_changes VALUES (?, 'finalized', ?, NULL)",
        [invoice.invoice_id, FINALIZED],
    )
    con.execute(
        "INSERT INTO meterbook_stripe.invoices VALUES"
        " (?, ?, '2026-10', ?, ?, ?, ?, 'open', ?, ?, ?, ?, NULL)",
        [invoice.invoice_id, invoice.number, invoice.customer_id, f"cus_{invoice.customer_id}",
         invoice.stripe_id, invoice.currency, invoice.minor, invoice.minor, FINALIZED, FINALIZED],
    )  # fmt: skip


def credit(path: Path, invoice: Invoice, amount: str, settlement: str = "reduce_due") -> None:
    """A credit note in the ledger, as the credit-note command would leave it."""
    con = connect(path)
    try:
        n = con.execute("SELECT count(*) FROM meterbook_ledger.credit_notes").fetchone()[0] + 1
        con.execute(
            "INSERT INTO meterbook_ledger.credit_notes VALUES (?, ?, ?, ?, ?, ?, ?, ?,"
            " DATE '2026-11-20', TIMESTAMPTZ '2026-11-20 10:00:00+00', 'goodwill', ?, ?, 0, ?,"
            " '{}', '<html></html>')",
            [f"cn_{n}", f"CN-2026-{n:06d}", invoice.invoice_id, invoice.number,
             invoice.customer_id, f"sub_{invoice.customer_id}", invoice.currency,
             invoice.exponent, settlement, Decimal(amount), Decimal(amount)],
        )  # fmt: skip
    finally:
        con.close()


@dataclass
class World:
    """A workspace folder with its catalog, warehouse, fake Stripe and dunning outbox."""

    home: Path
    stripe: FakeStripe
    invoices: list[Invoice]
    outbox: DunningOutbox = field(init=False)
    now: datetime = DUE  # the simulated clock: the outbox's timestamps follow the days run

    def __post_init__(self) -> None:
        self.outbox = DunningOutbox(dunning_outbox_path(self.home), clock=lambda: self.now)

    @property
    def warehouse(self) -> Path:
        return self.home / "warehouse.duckdb"

    @property
    def catalog_dir(self) -> Path:
        return self.home / "catalog"

    def catalog(self):
        return load_catalog(self.catalog_dir)

    def pull(self, now: datetime):
        """The payment-status pull of the dunning job, at `now`."""
        con = connect(self.warehouse)
        try:
            return pull_payment_status(con, self.stripe, now)
        finally:
            con.close()

    def states(self):
        con = connect(self.warehouse)
        try:
            return read_receivables(con)
        finally:
            con.close()

    def run(self, now: datetime, transport, **options):
        """One day of the dunning job: pull, then decide and send."""
        self.now = now
        con = connect(self.warehouse)
        try:  # one connection for both: a test runs dozens of days
            pull_payment_status(con, self.stripe, now)
            states = read_receivables(con)
        finally:
            con.close()
        return run_dunning(
            states,
            self.catalog(),
            self.outbox,
            now,
            transport,
            catalog_dir=self.catalog_dir,
            **options,
        )

    def statuses(self) -> dict[tuple[str, str], str]:
        return {row.key: row.status for row in self.outbox.rows()}


def make_world(home: Path, smtp: str = "", invoices: list[Invoice] | None = None) -> World:
    invoices = [ACME, TOKYO, NOMAIL] if invoices is None else invoices
    write_catalog(home, smtp)
    stripe = FakeStripe(invoices)
    build_warehouse(home / "warehouse.duckdb", invoices)
    return World(home, stripe, invoices)
