"""The demo: build a workspace, close October, finalize it, receive a late file, close November.

It prints a summary per month, three sample invoices and the commands that show the rest;
`--verbose` prints every event fate and every invoice instead.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal

from orchestration.demo import DemoError
from orchestration.demo.generate import (
    MONTHS,
    SEED,
    demo_customers,
    write_catalog,
    write_late_file,
    write_month,
)
from orchestration.demo.receiver import Received, webhook_receiver
from orchestration.workspace import Workspace

MARKER = ".meterbook-demo"
# The demo's "now": after both months, so no event is too far in the future, whatever the clock.
DEMO_NOW = "2026-12-02T00:00:00Z"
SECRET_ENV = "METERBOOK_WEBHOOK_SECRET"


def prepare_home(ws: Workspace) -> None:
    """Start from an empty folder; only a previous demo is ever removed."""
    if ws.home.exists() and any(ws.home.iterdir()):
        if not (ws.home / MARKER).exists():
            raise DemoError(
                f"{ws.home} is not empty and is not a demo workspace; "
                "choose an empty folder with --home"
            )
        shutil.rmtree(ws.home)
    ws.ensure()
    (ws.home / MARKER).write_text(
        "built by `meterbook demo`; deleted and rebuilt by the next one\n"
    )


def run_demo(ws: Workspace, say: Callable[[str], None], verbose: bool = False) -> None:
    from orchestration.pipeline import (  # noqa: PLC0415
        activate,
        close_period,
        finalize_period,
        recognize_revenue,
    )

    os.environ["METERBOOK_NOW"] = DEMO_NOW
    prepare_home(ws)
    activate(ws)
    rng = random.Random(SEED)
    customers = demo_customers(rng)
    write_catalog(ws.catalog_dir, customers)
    counts = {m: write_month(ws.landing_dir, customers, m, rng) for m in MONTHS}
    say(f"workspace {ws.home}: {len(customers)} customers, events {counts}")

    october, november = MONTHS
    # alerts go to a receiver the demo runs, for as long as it runs (SPEC 9)
    with webhook_receiver(secrets.token_hex(16)) as received:
        _point_webhook_at(ws, received)
        say(f"closing {october} ...")
        close_period(ws, october)
        say(f"finalizing {october} ...")
        finalize_period(ws, october)
        say(f"recognizing {october}'s revenue ...")
        recognize_revenue(ws, october)
        late = write_late_file(ws.landing_dir, customers, october, rng)
        say(f"a late file arrived with {late} events for {october} (already finalized)")
        say(f"closing {november} ...")
        close_period(ws, november)
    _forget_webhook(ws)
    (_everything if verbose else _summary)(ws)
    _credit_note(ws, october)
    _entitlements_over_http(ws)
    _events_over_http(ws, say)
    _alerts(received)
    _next(ws, verbose)


WEBHOOK_FILE = "demo-webhook.yaml"


def _point_webhook_at(ws: Workspace, received: Received) -> None:
    os.environ[SECRET_ENV] = received.secret
    (ws.catalog_dir / WEBHOOK_FILE).write_text(
        "# written by `meterbook demo` for its own receiver, removed when the demo ends\n"
        f'settings:\n  webhook: {{url: "{received.url}", secret_env: {SECRET_ENV}}}\n'
    )


def _forget_webhook(ws: Workspace) -> None:
    """The receiver stops with the demo: later runs record alerts without trying to send."""
    (ws.catalog_dir / WEBHOOK_FILE).unlink(missing_ok=True)


def _entitlements_over_http(ws: Workspace) -> None:
    import httpx  # noqa: PLC0415

    from orchestration.billing.entitlements.publish import read_snapshot  # noqa: PLC0415
    from orchestration.serve.server import running_server  # noqa: PLC0415

    customer, feature = _denied_example(read_snapshot(ws.home))
    path = f"/v1/customers/{customer}/entitlements/{feature}"
    _section(f"Entitlements over HTTP: may {customer} use {feature}?")
    with running_server(ws.home) as url:
        print(f"$ curl {url}{path}")
        print(json.dumps(httpx.get(url + path).json(), indent=2))
    print(f"(the API ran for this request only; `meterbook --home {ws.home} serve` keeps it up)")


API_KEY_FILE = "demo-api-key.yaml"


def _events_over_http(ws: Workspace, say: Callable[[str], None]) -> None:
    """A burst of events POSTed to the API, then one micro-batch cycle (`meterbook follow`):
    the customer closest to a hard limit is refused once the burst has been counted."""
    from orchestration.billing.entitlements.publish import read_snapshot  # noqa: PLC0415
    from orchestration.follow import follow  # noqa: PLC0415
    from orchestration.serve.server import running_server  # noqa: PLC0415

    customer, feature, answer = _closest_to_hard_limit(read_snapshot(ws.home))
    burst = int(answer["remaining"]) + 4
    _section(f"Events over HTTP: {burst} API calls from {customer}, {answer['remaining']} left")
    key = _demo_api_key(ws)
    try:
        with running_server(ws.home) as url:
            _post_burst(url, key, customer, answer, burst)
            started = time.monotonic()
            follow(ws, say, interval=1, cycles=1)
            after = _answer_after(url, customer, feature, answer["as_of"])
            print(f"$ curl {url}/v1/customers/{customer}/entitlements/{feature}")
            print(json.dumps(after, indent=2))
            verdict = "refused" if not after["has_access"] else "still allowed"
            print(f"{verdict} {time.monotonic() - started:.0f} s after the burst was acknowledged")
    finally:
        (ws.catalog_dir / API_KEY_FILE).unlink(missing_ok=True)


def _closest_to_hard_limit(snapshot: dict) -> tuple[str, str, dict]:
    allowed = [
        (Decimal(a["remaining"]), customer_id, feature, a)
        for customer_id, entry in snapshot["customers"].items()
        for feature, a in entry["entitlements"].items()
        if a["subscription_id"] and a["has_access"] and a["limit"] and not a["soft"]
    ]
    if not allowed:
        raise DemoError("the demo's catalog has no customer under a hard limit")
    _, customer_id, feature, answer = min(allowed, key=lambda row: row[:3])
    return customer_id, feature, answer


def _demo_api_key(ws: Workspace) -> str:
    from orchestration.serve.api_keys import key_hash, new_key  # noqa: PLC0415

    key = new_key()
    (ws.catalog_dir / API_KEY_FILE).write_text(
        "# written by `meterbook demo` for its own producer, removed when the demo ends\n"
        f"settings:\n  api_keys: [{{id: demo, sha256: {key_hash(key)}}}]\n"
        "  events_api: {rotate_seconds: 1}\n"
    )
    return key


def _post_burst(url: str, key: str, customer: str, answer: dict, burst: int) -> None:
    import httpx  # noqa: PLC0415

    # one second after the watermark: the same period, and a new as_of to wait for
    moment = datetime.fromisoformat(answer["as_of"].replace("Z", "+00:00")) + timedelta(seconds=1)
    stamp = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    events = [
        {
            "event_id": f"demo-burst-{i}",
            "customer_id": customer,
            "event_name": "api.request",
            "timestamp": stamp,
            "properties": {"endpoint": "/v1/search"},
        }
        for i in range(burst)
    ]
    half = burst // 2
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/x-ndjson"}
    for part in (events[:half], events[half:]):
        body = "".join(json.dumps(e) + "\n" for e in part)
        print(
            f"$ curl -X POST {url}/v1/events -H 'Authorization: Bearer $METERBOOK_API_KEY' "
            f"-H 'Content-Type: application/x-ndjson' --data-binary @burst.ndjson  # {len(part)} events"
        )
        reply = httpx.post(f"{url}/v1/events", content=body, headers=headers).json()
        print(f"202: {reply['accepted']} accepted, {reply['refused']} refused")


def _answer_after(url: str, customer: str, feature: str, as_of: str) -> dict:
    """The answer once the server has loaded a snapshot newer than `as_of` (within 0.2 s)."""
    import httpx  # noqa: PLC0415

    path = f"{url}/v1/customers/{customer}/entitlements/{feature}"
    deadline = time.monotonic() + 10
    while True:
        after = httpx.get(path).json()
        if after["as_of"] != as_of or time.monotonic() > deadline:
            return after
        time.sleep(0.1)


def _denied_example(snapshot: dict) -> tuple[str, str]:
    """A customer a hard limit stopped, the most telling answer; else the first one."""
    for customer_id, entry in sorted(snapshot["customers"].items()):
        for feature, answer in sorted(entry["entitlements"].items()):
            if answer["subscription_id"] and not answer["has_access"] and answer["limit"]:
                return customer_id, feature
    first = min(snapshot["customers"])
    return first, min(snapshot["customers"][first]["entitlements"] or {"-": None})


def _alerts(received: Received) -> None:
    _section("Usage alerts delivered to a webhook on 127.0.0.1")
    valid = sum(received.signatures_valid)
    print(f"{len(received.bodies)} notification(s) received, {valid} with a valid signature")
    if received.bodies:
        print(json.dumps(received.bodies[0], indent=2))


def _summary(ws: Workspace) -> None:
    from orchestration.reports import demo_summary_text  # noqa: PLC0415

    _section("Summary")
    print(demo_summary_text(ws, list(MONTHS)))
    _wallet(ws)
    _revenue(ws)


# the customer whose wallet the demo prints: a paid pack, its auto top-up and a discount
WALLET_SHOWN = "globex"


def _wallet(ws: Workspace) -> None:
    from orchestration.billing.wallets.report import format_wallets  # noqa: PLC0415
    from orchestration.reports import wallet_document  # noqa: PLC0415

    _section(f"A wallet: {WALLET_SHOWN}'s prepaid credits")
    print(format_wallets(wallet_document(ws, WALLET_SHOWN, None)))


def _revenue(ws: Workspace) -> None:
    from orchestration.billing.revenue.report import format_revenue  # noqa: PLC0415
    from orchestration.reports import revenue_document  # noqa: PLC0415

    october = MONTHS[0]
    _section(f"Revenue recognized in {october} (its invoices are finalized)")
    document, _journal = revenue_document(ws, october)
    print(format_revenue(document, largest=5))


def _credit_note(ws: Workspace, month: str) -> None:
    """Half the largest fixed fee of the month's finalized invoices credited (SPEC 11): unpaid
    in the demo (no Stripe), so it lowers what the invoice owes."""
    from orchestration.billing.credit_notes.issue import credit_note  # noqa: PLC0415
    from orchestration.defs.resources import MeterbookWorkspace  # noqa: PLC0415
    from orchestration.pipeline import issue_credit_note  # noqa: PLC0415

    meterbook = MeterbookWorkspace(home=str(ws.home))
    with meterbook.reader() as con:
        invoice_id, number, line_id, amount, currency = con.execute(
            """
            SELECT i.invoice_id, i.number, l.line_id, l.amount, i.currency
            FROM meterbook_ledger.invoices AS i
            JOIN meterbook_ledger.invoice_lines AS l USING (invoice_id)
            WHERE i.close_month = ? AND l.kind = 'fixed_fee' AND i.currency_exponent = 2
            ORDER BY l.amount DESC, i.number LIMIT 1
            """,
            [month],
        ).fetchall()[0]
    half = (amount / 2).quantize(Decimal("0.01"))
    config = {
        "invoice_id": invoice_id,
        "reason": "Demo: half of the platform fee credited after an outage",
        "lines": [{"line_id": line_id, "amount": str(half)}],
        "credit_note_id": "cn_demo",
    }
    issue_credit_note(ws, config)
    with meterbook.reader() as con:
        note = credit_note(con, "cn_demo")
    _section(f"A credit note on {number}")
    print(
        f"{note['number']}: {note['subtotal']} + tax {note['tax_total']} = {note['total']} "
        f"{currency} credited on {number}; it lowers what the invoice owes (unpaid)"
    )
    print(f"Its document: {ws.documents_dir / 'credit_notes' / (note['number'] + '.html')}")


def _everything(ws: Workspace) -> None:
    from orchestration.reports import events_text, invoices_text  # noqa: PLC0415

    _section("Event fates")
    print(events_text(ws, None, as_json=False, held_shown=None))
    for month in MONTHS:
        _section(f"Invoices for {month}")
        print(invoices_text(ws, month, None, as_json=False))
    _wallet(ws)
    _revenue(ws)


def _next(ws: Workspace, verbose: bool) -> None:
    meterbook = f".venv/bin/meterbook --home {ws.home}"
    _section("Next")
    if not verbose:
        for month in MONTHS:
            print(f"Every invoice of {month}:  {meterbook} invoices --period {month}")
        print(f"Every event's fate:        {meterbook} events")
        print(f"All of the above at once:  {meterbook} demo --verbose (builds the demo again)")
    print(f"JSON of one month:         {meterbook} invoices --period {MONTHS[-1]} --json")
    print(f"Every prepaid-credit wallet:  {meterbook} wallets")
    print(
        f"Revenue and its journal:   {meterbook} revenue --period {MONTHS[0]} --journal journal.csv"
    )
    print(f"Credit an invoice:         {meterbook} credit-note NUMBER --reason TEXT")
    print(
        f"Test a price change first: {meterbook} backtest --catalog DIR "
        f"--from {MONTHS[0]} --to {MONTHS[-1]}   (DIR: a copy of {ws.catalog_dir}, edited)"
    )
    print(f"Usage that bills nothing:  {meterbook} leakage --period {MONTHS[0]}")
    print(f"What each customer may use:  {meterbook} entitlements")
    print(f"The same over HTTP:        {meterbook} serve   (then curl the address it prints)")
    print(f"Invoice documents (HTML, PDF):  {ws.documents_dir}")
    print(f"Each customer's month so far:  {ws.documents_dir / 'usage'}")
    print(f"The pipeline and its runs in the Dagster UI:  {meterbook} ui")


def _section(title: str) -> None:
    print(f"\n== {title} " + "=" * max(0, 70 - len(title)))
