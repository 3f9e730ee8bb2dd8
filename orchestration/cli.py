"""`meterbook`: the commands of SPEC section 4. Each runs its work as a Dagster run.

Every failure is one line on stderr, `meterbook COMMAND: what went wrong`, and a non-zero
exit: 2 for a command line argparse refuses, 1 for the rest, 130 when stopped by a signal.
A failure nobody foresaw keeps its traceback in `logs/meterbook-errors.log`, not on screen.
"""

from __future__ import annotations

import argparse
import difflib
import json
import logging
import os
import re
import sys
import traceback
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import NoReturn

from orchestration.billing.finalize import FinalizeError
from orchestration.billing.wallets.report import format_wallets
from orchestration.catalog import Catalog, CatalogError, load_catalog
from orchestration.cli_dunning import DunningRefused, cmd_dunning
from orchestration.demo import DemoError
from orchestration.ingest.fates_report import NoFatesYet
from orchestration.interrupts import RunInterrupted, sigterm_as_interrupt, stopped
from orchestration.locking import WorkspaceLocked
from orchestration.pipeline import PipelineError, activate, run_job, workspace_at
from orchestration.reports import (
    NothingToShow,
    NoWarehouse,
    events_text,
    finalized_count,
    invoices_text,
    line_events_text,
    require_invoices,
    revenue_document,
    verify_text,
    wallet_document,
)
from orchestration.workspace import Workspace, now_utc


class CommandError(Exception):
    """A failure the user can act on; printed as one line, exit code 1."""


# what a command may fail with and the user can act on: the message is the whole story
EXPECTED = (
    CommandError,
    NoWarehouse,
    NothingToShow,
    PipelineError,
    WorkspaceLocked,
    FinalizeError,
    DemoError,
    NoFatesYet,
    DunningRefused,
)
_EXCEPTION_NAME = re.compile(r"^(?:\w+\.)+\w+: ")  # "package.module.SomeError: "


def progress(message: str) -> None:
    print(f"meterbook: {message}", file=sys.stderr, flush=True)


def _catalog(ws: Workspace, list_every_issue: bool = False) -> Catalog:
    """The catalog, or one line naming its first error; `validate` lists every one."""
    try:
        return load_catalog(ws.catalog_dir)
    except CatalogError as exc:
        issues = exc.issues
        if len(issues) == 1:
            nothing = "" if list_every_issue else "; nothing was run"
            raise CommandError(f"{issues[0]}{nothing}") from None
        if list_every_issue:
            for issue in issues:
                print(f"  {issue}", file=sys.stderr)
            raise CommandError(f"the catalog has {len(issues)} errors") from None
        raise CommandError(
            f"the catalog has {len(issues)} errors, the first: {issues[0]} "
            "(`meterbook validate` lists them all); nothing was run"
        ) from None


def _run(
    ws: Workspace, job: str, partition: str | None = None, run_config: dict | None = None
) -> None:
    _catalog(ws)
    started = f"running {job}" + (f" for {partition}" if partition else "") + " ..."
    outcome = run_job(ws, job, partition, on_start=lambda: progress(started), run_config=run_config)
    if not outcome.success:
        # the step's own message, without the exception's module path before it
        error = _EXCEPTION_NAME.sub("", outcome.error or "")
        raise CommandError(f"{job} failed: {error} (Dagster run {outcome.run_id})")
    for note in outcome.notes:
        progress(note)
    progress(f"{job} done (Dagster run {outcome.run_id})")


def _period(value: str) -> str:
    from orchestration.billing.month import BillingMonth  # noqa: PLC0415

    try:
        BillingMonth.parse(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= 86_400:
        raise argparse.ArgumentTypeError(f"seconds from 0 to 86400, got {value!r}")
    return seconds


def _count(value: str) -> int:
    if not value.isascii() or not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"a whole number of 1 or more, got {value!r}")
    return int(value)


def _port(value: str) -> int:
    if not value.isascii() or not value.isdigit() or not 1 <= int(value) <= 65535:
        raise argparse.ArgumentTypeError(f"a port is a number from 1 to 65535, got {value!r}")
    return int(value)


def cmd_validate(ws: Workspace, args) -> int:
    catalog = _catalog(ws, list_every_issue=True)
    print(
        f"catalog OK: {len(catalog.meters)} meters, {len(catalog.plans)} plans, "
        f"{len(catalog.customers)} customers, {len(catalog.subscriptions)} subscriptions"
    )
    return 0


def cmd_ingest(ws: Workspace, args) -> int:
    _run(ws, "ingest_landing_files")
    return cmd_events(ws, argparse.Namespace(period=None, json=False))


def cmd_events(ws: Workspace, args) -> int:
    print(events_text(ws, args.period, args.json))
    return 0


def cmd_close(ws: Workspace, args) -> int:
    _run(ws, "month_end_close", args.period)
    return 0


def cmd_finalize(ws: Workspace, args) -> int:
    try:  # asked before a run starts: a month with nothing to number is a one-line answer
        require_invoices(ws, args.period)
    except NothingToShow as exc:
        raise CommandError(f"nothing to finalize: {exc}") from None
    _run(ws, "finalize_invoices", args.period)
    return cmd_invoices(ws, argparse.Namespace(period=args.period, customer=None, json=False))


def cmd_invoices(ws: Workspace, args) -> int:
    if getattr(args, "line", None):
        if not args.events:
            raise CommandError("--line needs --events (the billable events behind the line)")
        print(line_events_text(ws, args.line, args.json))
        return 0
    if getattr(args, "events", False):
        raise CommandError("--events needs --line LINE_ID (a usage line's id)")
    if args.period is None:
        raise CommandError("invoices needs --period (or --line LINE_ID --events)")
    try:
        print(invoices_text(ws, args.period, args.customer, args.json))
    except NothingToShow:
        if args.customer is not None:
            _known_payer(ws, args.customer)  # a typo or a sub-account says so instead
        raise
    return 0


def _known_payer(ws: Workspace, customer_id: str) -> None:
    """Raises when the catalog has no such customer, or when it has no invoices of its own."""
    try:
        catalog = load_catalog(ws.catalog_dir)
    except CatalogError:
        return  # cannot tell; the empty answer stands
    customer = catalog.find_customer(customer_id)
    if customer is None:
        known = [c.id for c in catalog.customers]
        close = difflib.get_close_matches(customer_id, known, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise CommandError(f"no customer {customer_id!r} in the catalog{hint}")
    if customer.parent_id is not None:
        raise CommandError(
            f"{customer_id} is a sub-account of {customer.parent_id}: its usage is on "
            f"{customer.parent_id}'s invoices (--customer {customer.parent_id})"
        )


def cmd_revenue(ws: Workspace, args) -> int:
    """Builds the month's revenue from the ledger (the recognize_revenue job), then prints it
    (SPEC 8); --journal writes the month's journal as CSV."""
    from orchestration.billing.revenue.journal import write_journal  # noqa: PLC0415
    from orchestration.billing.revenue.report import format_revenue  # noqa: PLC0415

    if not finalized_count(ws):
        raise CommandError(
            "nothing to recognize: no invoice is finalized yet (revenue is built from "
            "finalized invoices only; `meterbook finalize --period M` first)"
        )
    _run(ws, "recognize_revenue", args.period)
    document, journal = revenue_document(ws, args.period)
    if args.journal:
        write_journal(Path(args.journal), journal)
        progress(f"journal: {len(journal)} lines written to {args.journal}")
    print(json.dumps(document, indent=2) if args.json else format_revenue(document))
    return 0


def cmd_wallets(ws: Workspace, args) -> int:
    """Each wallet's grants, balances and ledger (SPEC 7); a sub-account shows its parent's."""
    owner = _wallet_owner(ws, args.customer) if args.customer else None
    report = wallet_document(ws, owner, now_utc().date())
    if not report["customers"]:
        empty = (
            f"{owner} has no wallet entries yet: credit grants appear after a close"
            if owner
            else "no wallet entries yet: credit grants appear after the first close"
        )
        if not args.json:
            print(empty)
            return 0
        progress(empty)
    print(json.dumps(report, indent=2) if args.json else format_wallets(report))
    return 0


def _wallet_owner(ws: Workspace, customer_id: str) -> str:
    """The customer whose wallet --customer names: its own, or a sub-account's parent's."""
    try:
        _known_payer(ws, customer_id)  # an unknown id (or a typo) fails in one line
    except CommandError:
        customer = load_catalog(ws.catalog_dir).find_customer(customer_id)
        if customer is None or customer.parent_id is None:
            raise
        parent = customer.parent_id
        progress(f"{customer_id} is a sub-account of {parent}: showing {parent}'s wallet")
        return parent
    return customer_id


def cmd_verify(ws: Workspace, args) -> int:
    passed, text = verify_text(ws, args.json)
    print(text)
    return 0 if passed else 1


def cmd_void(ws: Workspace, args) -> int:
    from orchestration.billing.finalize import void_invoice  # noqa: PLC0415
    from orchestration.defs.resources import MeterbookWorkspace  # noqa: PLC0415
    from orchestration.workspace import now_utc  # noqa: PLC0415

    if not ws.warehouse_path.exists():
        raise NoWarehouse(f"no warehouse at {ws.warehouse_path}: no invoice was ever finalized")
    with MeterbookWorkspace(home=str(ws.home)).warehouse() as con:
        void_invoice(con, args.invoice_id, args.reason, now_utc())
    progress(f"voided {args.invoice_id}: {args.reason}")
    return 0


def cmd_credit_note(ws: Workspace, args) -> int:
    """Credits a finalized invoice (SPEC 11) through the `credit_note` job, as the UI would."""
    import uuid  # noqa: PLC0415

    from orchestration.billing.credit_notes.issue import (  # noqa: PLC0415
        CreditNoteRequest,
        credit_lines,
        credit_note,
        preview_credit_note,
    )
    from orchestration.billing.credit_notes.plan import CreditNoteError  # noqa: PLC0415
    from orchestration.defs.resources import MeterbookWorkspace  # noqa: PLC0415
    from orchestration.workspace import now_utc  # noqa: PLC0415

    if not ws.warehouse_path.exists():
        raise NoWarehouse(f"no warehouse at {ws.warehouse_path}: no invoice was ever finalized")
    lines, amounts = args.line or [], args.amount or []
    if len(lines) != len(amounts):
        raise CommandError("each --line needs its --amount (and each --amount its --line)")
    credit_note_id = f"cn_{uuid.uuid4().hex[:24]}"
    _catalog(ws)
    try:  # refused before any run starts: one line, no failed run in the history
        pairs = list(zip(lines, amounts, strict=True))
        request = CreditNoteRequest(args.invoice_id, args.reason, credit_lines(pairs), args.refund)
        with MeterbookWorkspace(home=str(ws.home)).warehouse() as con:
            preview_credit_note(con, request, now_utc())
    except CreditNoteError as exc:
        raise CommandError(str(exc)) from None
    config = {
        "invoice_id": args.invoice_id,
        "reason": args.reason,
        "lines": [
            {"line_id": line, "amount": amount} for line, amount in zip(lines, amounts, strict=True)
        ],
        "refund": args.refund,
        "credit_note_id": credit_note_id,
    }
    _run(ws, "credit_note", run_config={"ops": {"issue_credit_note_op": {"config": config}}})
    with MeterbookWorkspace(home=str(ws.home)).reader() as con:
        note = credit_note(con, credit_note_id)
    path = ws.documents_dir / "credit_notes" / f"{note['number']}.html"  # written by the job
    if args.json:
        print(json.dumps(note, indent=2, ensure_ascii=False))
    else:
        print(
            f"{note['number']} credits {note['total']} {note['currency']} of invoice "
            f"{note['invoice_number']} ({note['settlement'].replace('_', ' ')}): {path}"
        )
    return 0


def cmd_leakage(ws: Workspace, args) -> int:
    """Usage of a month that bills nothing, and the month's anomalies (SPEC 10)."""
    from orchestration.billing.anomalies import find_anomalies  # noqa: PLC0415
    from orchestration.billing.leakage import NoUsageYet, leakage_report, leakage_text  # noqa: PLC0415
    from orchestration.defs.resources import MeterbookWorkspace  # noqa: PLC0415

    if not ws.warehouse_path.exists():
        raise NoWarehouse(f"no warehouse at {ws.warehouse_path}: no event was ever ingested")
    catalog = _catalog(ws)
    with MeterbookWorkspace(home=str(ws.home)).reader() as con:
        try:
            report = leakage_report(con, catalog, args.period)
        except NoUsageYet as exc:
            raise CommandError(str(exc)) from None
        anomalies = find_anomalies(con, args.period, catalog.settings.anomaly_pct)
    if args.json:
        print(json.dumps({**report, "anomalies": anomalies.to_json()}, indent=2))
        return 0
    print(leakage_text(report))
    counts = ", ".join(f"{n} {name.replace('_', ' ')}" for name, n in anomalies.counts().items())
    print(f"\nAnomalies ({counts}):")
    print("\n".join(f"  {line}" for line in anomalies.lines()) or "  none")
    return 0


def cmd_backtest(ws: Workspace, args) -> int:
    """Re-rates closed months under a candidate catalog (SPEC 10) through the `price_backtest`
    job, as the UI would; the baseline under the current catalog must reproduce billing."""
    from orchestration.billing.backtest.replay import (  # noqa: PLC0415
        difference_text,
        months_to_replay,
    )
    from orchestration.billing.backtest.run import (  # noqa: PLC0415
        backtest_folder,
        new_backtest_id,
        read_differences,
    )
    from orchestration.defs.resources import MeterbookWorkspace  # noqa: PLC0415

    if not ws.warehouse_path.exists():
        raise NoWarehouse(f"no warehouse at {ws.warehouse_path}: no month was ever closed")
    candidate = Path(args.catalog).expanduser().resolve()
    if not candidate.is_dir():
        raise CommandError(f"--catalog {args.catalog}: not a folder of catalog files")
    try:  # refused before any run starts: a typo in the candidate or the months, in one line
        load_catalog(candidate)
        with MeterbookWorkspace(home=str(ws.home)).reader() as con:
            months_to_replay(con, args.first, args.last)
    except CatalogError as exc:
        issues = exc.issues
        more = f" (and {len(issues) - 1} more: meterbook validate)" if len(issues) > 1 else ""
        raise CommandError(f"the candidate catalog: {issues[0]}{more}; nothing was run") from None
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    backtest_id = new_backtest_id(now_utc())
    config = {
        "catalog": str(candidate),
        "from_month": args.first,
        "to_month": args.last,
        "backtest_id": backtest_id,
        "keep_sandbox": args.keep,
    }
    try:
        _run(ws, "price_backtest", run_config={"ops": {"price_backtest_op": {"config": config}}})
    except CommandError:
        for difference in read_differences(ws.home, backtest_id):
            print(f"  {difference_text(difference)}", file=sys.stderr)
        raise
    folder = backtest_folder(ws.home, backtest_id)
    text = (folder / "results.json").read_text(encoding="utf-8")
    if args.json:
        sys.stdout.write(text)  # the file as written, not parsed and printed again
    else:
        print(_backtest_text(json.loads(text), folder))
    return 0


def _backtest_text(results: dict, folder: Path) -> str:
    changed = [i for i in results["invoices"] if Decimal(i["difference"]) != 0]
    lines = [
        f"backtest {results['from']}..{results['to']}: {len(results['invoices'])} invoice(s), "
        f"{len(changed)} change"
    ]
    for currency, total in results["currency_totals"].items():
        lines.append(
            f"  {currency}: baseline {total['baseline']}, candidate {total['candidate']}, "
            f"difference {total['difference']}"
        )
    lines.append(f"report: {folder / 'report.html'} (JSON and CSV beside it)")
    return "\n".join(lines)


def _cmd_dunning(ws: Workspace, args) -> int:
    return cmd_dunning(ws, args, _catalog(ws), _run)


def cmd_sync_stripe(ws: Workspace, args) -> int:
    from integrations.stripe.client import StripeConfig  # noqa: PLC0415
    from integrations.stripe.errors import StripeConfigError  # noqa: PLC0415

    try:  # before any run: a missing key is the user's to fix, not a failed Dagster run
        StripeConfig.from_env()
    except StripeConfigError as exc:
        raise CommandError(str(exc)) from None
    _run(ws, "stripe_sync", args.period)
    return 0


def cmd_entitlements(ws: Workspace, args) -> int:
    """What each customer may use and how much is left (SPEC 9), from the published snapshot:
    the same answers `meterbook serve` gives, without opening the warehouse."""
    from orchestration.billing.entitlements.publish import read_snapshot  # noqa: PLC0415
    from orchestration.billing.entitlements.report import (  # noqa: PLC0415
        UnknownCustomer,
        entitlements_document,
        format_entitlements,
    )

    snapshot = read_snapshot(ws.home)
    if snapshot is None:
        raise CommandError(
            "no entitlements published yet: `meterbook ingest` (or a close) evaluates them"
        )
    try:
        document = entitlements_document(snapshot, args.customer)
    except UnknownCustomer as exc:
        raise CommandError(str(exc)) from None
    print(json.dumps(document, indent=2) if args.json else format_entitlements(document))
    return 0


def cmd_serve(ws: Workspace, args) -> int:
    from orchestration.serve.server import serve  # noqa: PLC0415 (starts uvicorn)

    serve(ws.home, args.host, args.port, on_ready=lambda url: progress(f"serving on {url}"))
    return 0


def cmd_follow(ws: Workspace, args) -> int:
    from orchestration.follow import follow  # noqa: PLC0415

    _catalog(ws)
    every = (
        f"every {args.interval:g} s" if args.interval else "at settings.events_api.follow_seconds"
    )
    progress(f"following landing/events/ {every}; Ctrl-C to stop")
    failed = follow(ws, progress, args.interval, args.cycles)
    progress(f"stopped following ({failed} failed cycle(s))" if failed else "stopped following")
    return 1 if failed else 0


def cmd_api_key(ws: Workspace, args) -> int:
    """Makes a key for a producer of events; only its hash goes into the catalog."""
    from orchestration.serve.api_keys import key_hash, new_key  # noqa: PLC0415

    key = new_key()
    customers = f", customers: [{', '.join(args.customers)}]" if args.customers else ""
    print(f"key (shown once; give it to the producer): {key}")
    print("add to the catalog, under settings.api_keys:")
    print(f"  - {{id: {args.id}, sha256: {key_hash(key)}{customers}}}")
    return 0


def cmd_notify(ws: Workspace, args) -> int:
    """Delivers the alert notifications still pending in the outbox (SPEC 9)."""
    from integrations.webhooks.delivery import (  # noqa: PLC0415
        WebhookConfigError,
        deliver_pending,
        webhook_secret,
    )
    from orchestration.billing.alerts.outbox import Outbox, outbox_path  # noqa: PLC0415

    webhook = _catalog(ws).settings.webhook
    if webhook is None:
        raise CommandError("settings.webhook is not set in the catalog: nowhere to deliver")
    try:
        secret = webhook_secret(webhook.secret_env)
    except WebhookConfigError as exc:
        raise CommandError(str(exc)) from None
    report = deliver_pending(Outbox(outbox_path(ws.home)), webhook.url, secret)
    if args.json:
        print(json.dumps(report.metadata(), indent=2))
    else:
        print(
            f"{report.delivered} delivered, {report.rejected} rejected (4xx, not retried), "
            f"{report.pending} still pending, to {report.url}"
        )
    return 0 if report.pending == 0 else 1


def cmd_demo(ws: Workspace, args) -> int:
    from orchestration.demo.run import run_demo  # noqa: PLC0415

    run_demo(ws, progress, verbose=args.verbose)
    return 0


def cmd_ui(ws: Workspace, args) -> int:
    from orchestration.ui import run_ui  # noqa: PLC0415 (starts the Dagster webserver)

    return run_ui(ws, args.host, args.port) or 0  # dagster dev's exit code


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors in one line like every other failure (usage: --help)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="meterbook", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--home", help="the workspace folder (default: $METERBOOK_HOME or ./.meterbook)"
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def add(name: str, handler: Callable, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--home", default=argparse.SUPPRESS, help="the workspace folder")
        p.set_defaults(handler=handler)
        return p

    demo = add("demo", cmd_demo, "build a demo workspace, close two months, print a summary")
    demo.add_argument("--verbose", action="store_true", help="print every invoice")
    add("validate", cmd_validate, "check the catalog and print every error")
    add("ingest", cmd_ingest, "ingest new landing files and give every event its fate")
    events = add("events", cmd_events, "how many events met each fate, and the held ones")
    events.add_argument("--period", type=_period)
    events.add_argument("--json", action="store_true", help="every held event, as JSON")
    close = add("close", cmd_close, "ingest, meter, rate and build the month's draft invoices")
    close.add_argument("--period", type=_period, required=True)
    finalize = add("finalize", cmd_finalize, "number and freeze the month's draft invoices")
    finalize.add_argument("--period", type=_period, required=True)
    invoices = add("invoices", cmd_invoices, "print the month's invoices")
    invoices.add_argument("--period", type=_period)
    invoices.add_argument("--customer")
    invoices.add_argument("--json", action="store_true")
    invoices.add_argument("--line", metavar="LINE_ID", help="a usage line (with --events)")
    invoices.add_argument(
        "--events", action="store_true", help="list the billable events behind --line"
    )
    revenue = add("revenue", cmd_revenue, "recognize the month's revenue (finalized invoices)")
    revenue.add_argument("--period", type=_period, required=True, help="a calendar month")
    revenue.add_argument("--json", action="store_true")
    revenue.add_argument("--journal", metavar="FILE", help="write the month's journal as CSV")
    wallets = add("wallets", cmd_wallets, "each wallet's grants, balances and ledger")
    wallets.add_argument("--customer", help="one customer (a sub-account: its parent's wallet)")
    wallets.add_argument("--json", action="store_true")
    verify = add(
        "verify", cmd_verify, "run every reconciliation over everything stored (slow: full)"
    )
    verify.add_argument("--json", action="store_true")
    void = add("void", cmd_void, "void a finalized invoice (the original stays in the ledger)")
    void.add_argument("invoice_id", help="the invoice's id (inv_...), not its number")
    void.add_argument("--reason", required=True)
    leakage = add("leakage", cmd_leakage, "usage that bills nothing, and anomalies, of a month")
    leakage.add_argument("--period", type=_period, required=True)
    leakage.add_argument("--json", action="store_true")
    backtest = add("backtest", cmd_backtest, "what a candidate catalog would have billed")
    backtest.add_argument("--catalog", required=True, help="the candidate catalog's folder")
    backtest.add_argument("--from", dest="first", type=_period, required=True, metavar="M1")
    backtest.add_argument("--to", dest="last", type=_period, required=True, metavar="M2")
    backtest.add_argument("--json", action="store_true")
    backtest.add_argument(
        "--keep", action="store_true", help="keep the candidate's warehouse copy to query"
    )
    credit = add("credit-note", cmd_credit_note, "credit a finalized invoice, whole or by line")
    credit.add_argument("invoice_id", help="the invoice's id (inv_...) or number")
    credit.add_argument("--line", action="append", metavar="LINE_ID", help="a line to credit")
    credit.add_argument(
        "--amount", action="append", metavar="X", help="what to credit of the --line before it"
    )
    credit.add_argument("--reason", required=True, help="printed on the credit note")
    credit.add_argument(
        "--refund", action="store_true", help="refund a paid invoice through Stripe"
    )
    credit.add_argument("--json", action="store_true")
    stripe = add(
        "sync-stripe", cmd_sync_stripe, "push finalized invoices to Stripe, pull payment status"
    )
    stripe.add_argument("--period", type=_period, required=True)
    entitlements = add(
        "entitlements", cmd_entitlements, "what each customer may use and how much is left"
    )
    entitlements.add_argument("--customer")
    entitlements.add_argument("--json", action="store_true")
    serve = add("serve", cmd_serve, "the HTTP API: entitlements, usage so far, events in")
    serve.add_argument("--host", default="127.0.0.1", help="the address to serve on (127.0.0.1)")
    serve.add_argument("--port", type=_port, default=8484, help="the port to serve on (8484)")
    follow = add(
        "follow", cmd_follow, "the micro-batch loop: ingest new events and republish, until stopped"
    )
    follow.add_argument(
        "--interval", type=_seconds, help="seconds between cycles (settings.events_api)"
    )
    follow.add_argument("--cycles", type=_count, help="stop after this many ingests")
    api_key = add("api-key", cmd_api_key, "make a key for a producer of events (POST /v1/events)")
    api_key.add_argument("id", help="the producer's name, the key's id in the catalog")
    api_key.add_argument(
        "--customers", nargs="+", metavar="ID", help="the only customers it may send events for"
    )
    dunning = add("dunning", _cmd_dunning, "the payment reminders due for overdue invoices")
    dunning.add_argument("--send", action="store_true", help="send them (each exactly once)")
    dunning.add_argument("--json", action="store_true")
    notify = add("notify", cmd_notify, "deliver the alert notifications still pending")
    notify.add_argument("--json", action="store_true")
    ui = add("ui", cmd_ui, "open the pipeline and its runs in the Dagster UI")
    ui.add_argument("--host", default="127.0.0.1", help="the address to serve on (127.0.0.1)")
    ui.add_argument("--port", type=_port, default=3000, help="the port to serve on (3000)")
    return parser


def _show_run_progress() -> None:
    """Progress a run reports on `meterbook.progress` (documents and PDFs by the thousand)
    reaches the terminal, while the run's own logs go to logs/<job>.log."""
    shown = logging.getLogger("meterbook.progress")
    if not shown.handlers:
        # the process's own stderr: a run redirects sys.stderr to its log file
        handler = logging.StreamHandler(sys.__stderr__)
        handler.setFormatter(logging.Formatter("meterbook: %(message)s"))
        shown.addHandler(handler)
        shown.setLevel(logging.INFO)
        shown.propagate = False


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _show_run_progress()
    ws = workspace_at(getattr(args, "home", None))
    try:
        return _dispatch(ws, args)
    except EXPECTED as exc:
        print(f"meterbook {args.command}: {_one_line(exc)}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # `meterbook invoices ... | head`: the reader has all it wanted; say nothing, and keep
        # Python from failing again on the lines still buffered for the closed pipe
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt as exc:
        stopped()
        # RunInterrupted says what became of the run; a bare interrupt came before any run
        reason = str(exc) if isinstance(exc, RunInterrupted) else "stopped by a signal"
        print(f"meterbook {args.command}: {reason}", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 (a bug: one line here, the traceback in the log)
        where = _log_traceback(ws)
        print(
            f"meterbook {args.command}: unexpected {type(exc).__name__}: {_one_line(exc)}"
            + (f" (traceback in {where})" if where else ""),
            file=sys.stderr,
        )
        return 1


def _dispatch(ws: Workspace, args) -> int:
    # the demo builds its folder; anything else on a folder that is not there is a typo, and
    # activating would create it
    if args.command != "demo":
        if not ws.home.is_dir():
            raise CommandError(
                f"no workspace at {ws.home} (give --home or METERBOOK_HOME; "
                "`meterbook demo` builds one)"
            )
        activate(ws)
    sigterm_as_interrupt()
    return args.handler(ws, args)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _log_traceback(ws: Workspace) -> str | None:
    if not ws.home.is_dir():
        return None
    path = ws.home / "logs" / "meterbook-errors.log"
    try:
        path.parent.mkdir(exist_ok=True)
        with path.open("a", encoding="utf-8") as log:
            traceback.print_exc(file=log)
    except OSError:
        return None
    return str(path)


if __name__ == "__main__":
    sys.exit(main())
