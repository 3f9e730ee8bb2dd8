"""The price backtest finance or an engineer launches from the UI (or `meterbook backtest`):
what a candidate catalog would have billed over closed months. Run config, as in the Launchpad:

    ops:
      price_backtest_op:
        config:
          catalog: /path/to/candidate/catalog   # a folder of catalog YAML files; a relative
                                                # path is read from the workspace's folder
          from_month: "2026-08"
          to_month: "2026-10"

It rates copies of the warehouse, never the warehouse itself: drafts, the ledger, wallets and
Stripe stay as they were. The results are in backtests/<id>/ (JSON, CSV and report.html).
"""

import logging
from pathlib import Path

from dagster import Config, Failure, MetadataValue, OpExecutionContext, job, op

from orchestration.billing.backtest.replay import (
    BacktestError,
    BaselineMismatch,
    difference_text,
)
from orchestration.billing.backtest.report import text_summary
from orchestration.billing.backtest.run import (
    BacktestRequest,
    BacktestRun,
    new_backtest_id,
    run_backtest,
)
from orchestration.catalog import CatalogError, load_catalog
from orchestration.defs.dbt.project import BUILD
from orchestration.defs.dbt.runner import run_dbt
from orchestration.defs.resources import MeterbookWorkspace
from orchestration.workspace import now_utc

SHOWN_DIFFERENCES = 20
# the CLI shows this logger on the terminal (the run's own logs go to logs/<job>.log)
PROGRESS = logging.getLogger("meterbook.progress")


class BacktestConfig(Config):
    catalog: str  # the candidate catalog's folder (relative: in the workspace's folder)
    from_month: str  # "YYYY-MM", the first close month to re-rate
    to_month: str  # "YYYY-MM", the last (included)
    # Set by `meterbook backtest`, so it finds the results; empty: made from the time
    backtest_id: str = ""
    # keep the candidate's warehouse copy: backtests/<id>/candidate.duckdb
    keep_sandbox: bool = False


def _rate(warehouse: Path, select: str, partition) -> None:
    run_dbt(warehouse, [*BUILD, "--quiet", "--select", select], partition)


@op(
    description="Re-rates the months under the current catalog (which must reproduce what was "
    "billed to the cent), then under the candidate catalog, in copies of the warehouse, and "
    "writes the comparison: per invoice and line, per plan and month, the largest movers, and "
    "an HTML report with charts.",
)
def price_backtest_op(
    context: OpExecutionContext, config: BacktestConfig, meterbook: MeterbookWorkspace
) -> None:
    request = _request(config, meterbook)

    def say(message: str) -> None:
        context.log.info(message)
        PROGRESS.info(message)

    try:
        done = run_backtest(
            meterbook.workspace.home,
            meterbook.exclusive,
            request,
            _rate,
            say=say,
        )
    except BaselineMismatch as exc:
        lines = [difference_text(d) for d in exc.differences]
        raise Failure(
            description=str(exc),
            metadata={
                "differences": MetadataValue.md(_bullets(lines)),
                "backtest_id": request.backtest_id,
            },
        ) from None
    except BacktestError as exc:
        raise Failure(description=str(exc)) from None
    context.add_output_metadata(_metadata(done))


def _request(config: BacktestConfig, meterbook: MeterbookWorkspace) -> BacktestRequest:
    folder = meterbook.workspace.home / Path(config.catalog).expanduser()  # absolute stays so
    try:
        candidate = load_catalog(folder)
    except CatalogError as exc:
        raise Failure(description=f"the candidate catalog: {exc}") from None
    return BacktestRequest(
        current=meterbook.catalog(),
        candidate=candidate,
        first=config.from_month,
        last=config.to_month,
        backtest_id=config.backtest_id or new_backtest_id(now_utc()),
        keep_sandbox=config.keep_sandbox,
    )


def _metadata(done: BacktestRun) -> dict:
    totals = {
        currency: {k: str(v) for k, v in vars(total).items()}
        for currency, total in done.result.currency_totals.items()
    }
    return {
        "backtest_id": done.folder.name,
        "months": MetadataValue.json([m.month for m in done.months]),
        "invoices": len(done.result.invoices),
        "invoices_changed": len(done.result.changed_invoices),
        "currency_totals": MetadataValue.json(totals),
        "summary": MetadataValue.md(_bullets(text_summary(done.result).splitlines())),
        "report": MetadataValue.path(str(done.files["html"])),
    }


def _bullets(lines: list[str]) -> str:
    shown = [f"- {line}" for line in lines[:SHOWN_DIFFERENCES]]
    if len(lines) > SHOWN_DIFFERENCES:
        shown.append(f"- ... and {len(lines) - SHOWN_DIFFERENCES} more")
    return "\n".join(shown)


@job(
    description=(
        "Price backtest: what a candidate catalog (prices, tiers, plans, meters) would have "
        "billed over months already closed, against what was billed. Give the candidate "
        "catalog's folder and the months as run config; nothing billed changes."
    ),
)
def price_backtest():
    price_backtest_op()
