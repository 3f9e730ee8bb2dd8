"""`meterbook`: the commands of SPEC section 4. Each runs its work as a Dagster run."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from orchestration.catalog import CatalogError, load_catalog
from orchestration.interrupts import RunInterrupted, sigterm_as_interrupt, stopped
from orchestration.locking import WorkspaceLocked
from orchestration.pipeline import PipelineError, activate, run_job, workspace_at
from orchestration.reports import (
    NoWarehouse,
    events_text,
    invoices_text,
    line_events_text,
    verify_text,
)
from orchestration.workspace import Workspace


class CommandError(Exception):
    """A failure the user can act on; printed as one line, exit code 1."""


def progress(message: str) -> None:
    print(f"meterbook: {message}", file=sys.stderr, flush=True)


def _catalog(ws: Workspace):
    try:
        return load_catalog(ws.catalog_dir)
    except CatalogError as exc:
        for issue in exc.issues:
            print(f"  {issue}", file=sys.stderr)
        raise CommandError(f"the catalog has {len(exc.issues)} error(s); nothing was run") from None


def _run(ws: Workspace, job: str, partition: str | None = None) -> None:
    _catalog(ws)
    progress(f"running {job}" + (f" for {partition}" if partition else "") + " ...")
    outcome = run_job(ws, job, partition)
    if not outcome.success:
        raise CommandError(f"{job} failed: {outcome.error} (Dagster run {outcome.run_id})")
    progress(f"{job} done (Dagster run {outcome.run_id})")


def _period(value: str) -> str:
    from orchestration.billing.month import BillingMonth  # noqa: PLC0415

    try:
        BillingMonth.parse(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def cmd_validate(ws: Workspace, args) -> int:
    catalog = _catalog(ws)
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
    _run(ws, "finalize_invoices", args.period)
    return cmd_invoices(ws, argparse.Namespace(period=args.period, customer=None, json=False))


def cmd_invoices(ws: Workspace, args) -> int:
    if getattr(args, "line", None):
        if not args.events:
            raise CommandError("--line needs --events (the billable events behind the line)")
        print(line_events_text(ws, args.line, args.json))
        return 0
    if args.period is None:
        raise CommandError("invoices needs --period (or --line LINE_ID --events)")
    print(invoices_text(ws, args.period, args.customer, args.json))
    return 0


def cmd_verify(ws: Workspace, args) -> int:
    passed, text = verify_text(ws, args.json)
    print(text)
    return 0 if passed else 1


def cmd_void(ws: Workspace, args) -> int:
    from orchestration.billing.finalize import void_invoice  # noqa: PLC0415
    from orchestration.defs.resources import MeterbookWorkspace  # noqa: PLC0415
    from orchestration.workspace import now_utc  # noqa: PLC0415

    with MeterbookWorkspace(home=str(ws.home)).warehouse() as con:
        void_invoice(con, args.invoice_id, args.reason, now_utc())
    progress(f"voided {args.invoice_id}: {args.reason}")
    return 0


def cmd_sync_stripe(ws: Workspace, args) -> int:
    _run(ws, "stripe_sync", args.period)
    return 0


def cmd_demo(ws: Workspace, args) -> int:
    from orchestration.demo.run import run_demo  # noqa: PLC0415

    run_demo(ws, progress)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="meterbook", description=__doc__)
    parser.add_argument(
        "--home", help="the workspace folder (default: $METERBOOK_HOME or ./.meterbook)"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, handler: Callable, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--home", default=argparse.SUPPRESS, help="the workspace folder")
        p.set_defaults(handler=handler)
        return p

    add("demo", cmd_demo, "build a demo workspace, close a month and print the invoices")
    add("validate", cmd_validate, "check the catalog and print every error")
    add("ingest", cmd_ingest, "ingest new landing files and give every event its fate")
    events = add("events", cmd_events, "how many events met each fate, and the held ones")
    events.add_argument("--period", type=_period)
    events.add_argument("--json", action="store_true")
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
    verify = add(
        "verify", cmd_verify, "run every reconciliation over everything stored (slow: full)"
    )
    verify.add_argument("--json", action="store_true")
    void = add("void", cmd_void, "void a finalized invoice (the original stays in the ledger)")
    void.add_argument("invoice_id")
    void.add_argument("--reason", required=True)
    stripe = add(
        "sync-stripe", cmd_sync_stripe, "push finalized invoices to Stripe, pull payment status"
    )
    stripe.add_argument("--period", type=_period, required=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    ws = workspace_at(getattr(args, "home", None))
    if args.command != "demo":  # the demo starts from an empty folder and activates it itself
        activate(ws)
    sigterm_as_interrupt()
    try:
        return args.handler(ws, args)
    except (CommandError, NoWarehouse, PipelineError, WorkspaceLocked) as exc:
        print(f"meterbook {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:
        stopped()
        # RunInterrupted says what became of the run; a bare interrupt came before any run
        reason = str(exc) if isinstance(exc, RunInterrupted) else "stopped by a signal"
        print(f"meterbook {args.command}: {reason}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
