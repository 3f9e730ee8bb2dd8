"""The wallet close's inputs read from the warehouse, and its outputs as Arrow rows.

Called by the dbt Python models `int_wallet_credit_coverage` and `int_wallet_draws` with
their DuckDB session; every relation is passed in by name, so nothing here knows dbt."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal

import pyarrow as pa

from orchestration.billing.month import BillingMonth
from orchestration.billing.wallets.close import (
    CloseInputs,
    CloseInvoice,
    CloseResult,
    Entry,
    PlanGrant,
    unbilled_days,
)
from orchestration.billing.wallets.draw import Line
from orchestration.billing.wallets.grants import Grant, Span
from orchestration.billing.wallets.ledger import ledger_sql
from orchestration.warehouse.tables import table_exists

_D = pa.decimal128(38, 12)

# one row per entry, credit line or invoice credit of a close (record_type says which)
COLUMNS: list[tuple[str, pa.DataType]] = [
    ("close_month", pa.string()),
    ("record_type", pa.string()),  # entry | line | invoice
    ("seq", pa.int32()),
    ("entry_id", pa.string()),
    ("entry_type", pa.string()),  # grant | draw | expire | rollover | void; line: its kind
    ("customer_id", pa.string()),
    ("grant_id", pa.string()),
    ("grant_kind", pa.string()),
    ("amount", _D),
    ("entry_date", pa.date32()),
    ("currency", pa.string()),
    ("invoice_id", pa.string()),
    ("line_id", pa.string()),
    ("charge_line_id", pa.string()),
    ("grant_source", pa.string()),
    ("subscription_id", pa.string()),
    ("granted_on", pa.date32()),
    ("expires_on", pa.date32()),
    ("priority", pa.int32()),
    ("applies_to", pa.string()),
    ("rollover_max", _D),
    ("grant_amount", _D),
]


@dataclass(frozen=True)
class Relations:
    """Names the queries use: temporary views over what the dbt model was handed."""

    invoices: str  # int_billing_invoices
    segments: str  # stg_billing__segments
    grants: str  # meterbook_catalog.credit_grants
    plan_grants: str  # meterbook_catalog.plan_credit_grants
    top_ups: str  # meterbook_catalog.auto_top_ups
    subscriptions: str  # meterbook_catalog.subscriptions
    plans: str  # meterbook_catalog.plans (their billing intervals)
    events: str  # int_events_metered
    drafts: str | None  # int_wallet_draws: the draft entries of every month (None: not yet)
    rated: str | None = None  # int_usage_lines_rated (coverage)
    lines: str | None = None  # int_billing_lines (draws)
    coverage: str | None = None  # int_wallet_credit_coverage (draws)
    line_kinds: str | None = None
    discounts: str | None = None  # stg_catalog__discounts


def views(con, drafts: str | None, **relations) -> Relations:
    """A temporary view per relation a dbt model was handed, named `wallet_<name>`."""
    names = {}
    for name, relation in relations.items():
        relation.create_view(f"wallet_{name}", replace=True)
        names[name] = f"wallet_{name}"
    return Relations(drafts=drafts if drafts and exists(con, drafts) else None, **names)


def sibling(this, name: str) -> str:
    """The relation `name` beside the model `this` (same database and schema)."""
    return f'"{this.database}"."{this.schema}"."{name}"'


def exists(con, name: str) -> bool:
    """Whether the relation `name` ([database.]schema.table, or a bare view name) exists."""
    parts = name.replace('"', "").split(".")
    return len(parts) == 1 or table_exists(con, parts[-2], parts[-1])


def close_months(con, rel: Relations, month: str) -> list[str]:
    """The month being closed; every month of the invoices when dbt runs without one."""
    if month:
        return [month]
    return [
        r[0]
        for r in con.execute(
            f"SELECT DISTINCT close_month FROM {rel.invoices} ORDER BY 1"
        ).fetchall()
    ]


def prior_entries(con, rel: Relations, month: str) -> list[Entry]:
    """The wallet ledger's entries of earlier close months (`ledger.ledger_sql`; the ledger
    schema exists: defs/dbt/project.py makes it before every build)."""
    rows = con.execute(
        f"SELECT {_ENTRY_COLUMNS} FROM ({ledger_sql(rel.drafts)}) WHERE close_month < ?"
        " ORDER BY close_month, provisional, seq",
        [month],
    ).fetchall()
    return [_entry(r) for r in rows]


_ENTRY_COLUMNS = ", ".join(name for name, _ in COLUMNS if name not in ("record_type", "entry_id"))


def _entry(r: tuple) -> Entry:
    (month, _seq, etype, customer, gid, kind, amount, day, currency, invoice, line, charge) = r[:12]
    source, sub, granted_on, expires_on, priority, applies_to, rollover_max, grant_amount = r[12:]
    grant = None
    if etype == "grant":
        grant = Grant(
            gid,
            customer,
            kind,
            grant_amount,
            granted_on,
            expires_on,
            priority,
            applies_to,
            source,
            sub,
            rollover_max,
        )
    return Entry(
        month, etype, customer, gid, kind, amount, day, currency, invoice, line, charge, grant
    )


def catalog_grants(con, rel: Relations) -> list[Grant]:
    rows = con.execute(
        f"SELECT grant_id, customer_id, kind, amount, granted_on, expires_on, priority, applies_to FROM {rel.grants}"
    ).fetchall()
    return [Grant(*r) for r in rows]


def invoices(con, rel: Relations, month: str) -> list[CloseInvoice]:
    """The month's invoices with what the wallet close needs of them (lines: `with_lines`)."""
    plan_grants: dict[tuple[str, int], list[PlanGrant]] = defaultdict(list)
    for r in con.execute(
        f"SELECT plan_code, version, grant_code, kind, amount, every, expires_after_days, rollover_max,"
        f" priority, applies_to FROM {rel.plan_grants} ORDER BY plan_code, version, grant_no"
    ).fetchall():
        plan_grants[(r[0], r[1])].append(PlanGrant(*r[2:]))
    top_ups = {
        r[0]: (r[1], r[2])
        for r in con.execute(f"SELECT subscription_id, below, amount FROM {rel.top_ups}").fetchall()
    }
    rows = con.execute(
        f"""
        SELECT i.invoice_id, i.customer_id, i.subscription_id, i.currency, i.currency_exponent, i.tax_rate,
               i.period_start, i.period_end, i.next_period_end, i.period_number IS NOT NULL,
               s.start_date, i.plan_code,
               (SELECT min_by(version, segment_no) FROM {rel.segments} g
                WHERE g.close_month = i.close_month AND g.invoice_id = i.invoice_id AND g.period_role = 'current')
        FROM {rel.invoices} i
        LEFT JOIN {rel.subscriptions} s USING (subscription_id)
        WHERE i.close_month = ?
        ORDER BY i.invoice_id
        """,
        [month],
    ).fetchall()
    out = []
    for r in rows:
        version_grants = tuple(plan_grants.get((r[11], r[12]), ()))
        out.append(
            CloseInvoice(
                *r[:10],
                start_date=r[10],
                plan_grants=version_grants,
                top_up=top_ups.get(r[2]),
            )  # fmt: skip
        )
    return out


def close_inputs(con, rel: Relations, month: str, rebuilt=()) -> CloseInputs:
    """`rebuilt`: entries this build made for earlier months (dbt run over every month):
    they replace what the tables hold for those months."""
    redone = {e.close_month for e in rebuilt}
    prior = [e for e in prior_entries(con, rel, month) if e.close_month not in redone]
    currencies = dict(con.execute(f"SELECT customer_id, currency FROM {rel.grants}").fetchall())
    month_end = BillingMonth.parse(month).end
    return CloseInputs(
        close_month=month,
        month_end=month_end,
        prior=prior + list(rebuilt),
        catalog_grants=catalog_grants(con, rel),
        invoices=invoices(con, rel, month),
        currencies=currencies,
        unbilled=unbilled(con, rel, month_end),
    )


def unbilled(con, rel: Relations, month_end: date) -> dict[str, list[tuple[date, date | None]]]:
    """Each billable customer's subscription days no close up to `month_end` bills
    (`close.unbilled_days`), from the subscriptions and their plans' intervals."""
    rows = con.execute(
        f"""
        SELECT s.customer_id, p.billing_interval, s.billing_anchor, s.start_date, s.end_date
        FROM {rel.subscriptions} s JOIN {rel.plans} p USING (plan_code)
        WHERE s.billable
        ORDER BY s.customer_id, s.subscription_id
        """
    ).fetchall()
    out: dict[str, list[tuple[date, date | None]]] = defaultdict(list)
    for customer_id, interval, anchor, start_date, end_date in rows:
        if (days := unbilled_days(month_end, interval, anchor, start_date, end_date)) is not None:
            out[customer_id].append(days)
    return dict(out)


def daily_usage(con, rel: Relations, month: str, keys: list[tuple]) -> dict[tuple, tuple]:
    """Additive usage (count and sum meters) per customer, meter, group and local day, for the
    (customer, meter) pairs in `keys` (those a grant covers for part of a period only)."""
    if not keys:
        return {}
    pairs = sorted({(k[0], k[1]) for k in keys})
    values = ", ".join("(?, ?)" for _ in pairs)
    rows = con.execute(
        f"""
        WITH wanted(customer_id, meter_code) AS (VALUES {values}),
        zones AS (SELECT DISTINCT customer_id, timezone FROM {rel.invoices} WHERE close_month = ?)
        SELECT e.billing_customer_id, e.meter_code, cast(e.group_key AS VARCHAR),
               cast(timezone(z.timezone, e.event_ts) AS DATE) AS day,
               cast(CASE any_value(e.aggregation) WHEN 'count' THEN count(*) ELSE sum(e.value) END AS DECIMAL(38, 12))
        FROM {rel.events} e
        JOIN wanted w ON w.customer_id = e.billing_customer_id AND w.meter_code = e.meter_code
        JOIN zones z ON z.customer_id = e.billing_customer_id
        WHERE e.aggregation IN ('count', 'sum')
          AND e.event_ts >= ? AND e.event_ts < ?
        GROUP BY ALL ORDER BY ALL
        """,
        [x for pair in pairs for x in pair] + [month, *_span(keys)],
    ).fetchall()
    out: dict[tuple, list] = defaultdict(list)
    for customer, meter, group, day, quantity in rows:
        out[(customer, meter, group)].append((day, quantity))
    return {k: tuple(v) for k, v in out.items()}


def _span(keys: list[tuple]) -> tuple[str, str]:
    # a day either side: local days of any zone fall within
    start = min(k[2] for k in keys)
    end = max(k[3] for k in keys)
    return (
        f"{date.fromordinal(start.toordinal() - 1)}T00:00:00Z",
        f"{date.fromordinal(end.toordinal() + 1)}T00:00:00Z",
    )


def partial_customers(inputs: CloseInputs) -> set[str]:
    """Customers with a grant that begins or ends inside one of their periods: only their
    lines need daily usage (a grant valid all period pays the whole line)."""
    dates: dict[str, set[date]] = defaultdict(set)
    for g in inputs.catalog_grants:
        dates[g.customer_id] |= {g.granted_on, *([g.expires_on] if g.expires_on else [])}
    for e in inputs.prior:
        if e.grant is not None:
            dates[e.customer_id] |= {
                e.grant.granted_on,
                *([e.grant.expires_on] if e.grant.expires_on else []),
            }
    for inv in inputs.invoices:
        for spec in inv.plan_grants:
            if spec.expires_after_days and inv.start_date:
                dates[inv.customer_id].add(
                    date.fromordinal(inv.start_date.toordinal() + spec.expires_after_days)
                )
    return {
        inv.customer_id
        for inv in inputs.invoices
        if any(inv.period_start < d < inv.period_end for d in dates.get(inv.customer_id, ()))
    }


def result_table(month: str, result: CloseResult) -> pa.Table:
    """The close's entries, credit lines and paid credits as rows of COLUMNS."""
    rows: list[dict] = []
    for seq, e in enumerate(result.entries, start=1):
        g = e.grant
        rows.append(
            {
                "close_month": month,
                "record_type": "entry",
                "seq": seq,
                "entry_id": e.entry_id,
                "entry_type": e.entry_type,
                "customer_id": e.customer_id,
                "grant_id": e.grant_id,
                "grant_kind": e.grant_kind,
                "amount": e.amount,
                "entry_date": e.entry_date,
                "currency": e.currency,
                "invoice_id": e.invoice_id,
                "line_id": e.line_id,
                "charge_line_id": e.charge_line_id,
                **(_grant_fields(g) if g else {}),
            }  # fmt: skip
        )
    for seq, line in enumerate(result.lines, start=1):
        rows.append(
            {
                "close_month": month,
                "record_type": "line",
                "seq": seq,
                "entry_type": line.kind,
                "customer_id": line.grant.customer_id,
                "grant_id": line.grant.grant_id,
                "grant_kind": line.grant.kind,
                "amount": line.amount,
                "invoice_id": line.invoice_id,
                "line_id": line.line_id,
                **_grant_fields(line.grant),
            }  # fmt: skip
        )
    for seq, (invoice_id, amount) in enumerate(sorted(result.credits_applied.items()), start=1):
        rows.append(
            {
                "close_month": month,
                "record_type": "invoice",
                "seq": seq,
                "invoice_id": invoice_id,
                "amount": amount,
            }
        )
    schema = pa.schema(COLUMNS)
    return pa.Table.from_pylist(rows, schema=schema) if rows else schema.empty_table()


def _grant_fields(g: Grant) -> dict:
    return {
        "grant_source": g.source, "subscription_id": g.subscription_id, "granted_on": g.granted_on,
        "expires_on": g.expires_on, "priority": g.priority, "applies_to": g.applies_to,
        "rollover_max": g.rollover_max, "grant_amount": g.amount,
    }  # fmt: skip


def credit_priced_usage(con, rel: Relations, month: str, inputs: CloseInputs) -> list[tuple]:
    """The month's per_unit usage lines with a credit_price and something to bill:
    (invoice_id, usage_key, billable quantity, credit_price, span)."""
    rows = con.execute(
        f"""
        SELECT r.invoice_id,
               concat_ws('|', r.segment_no, r.charge_no, coalesce(cast(r.group_key AS VARCHAR), '')),
               r.billable_quantity, r.credit_price, r.segment_start, r.segment_end,
               i.customer_id, r.meter_code, cast(r.group_key AS VARCHAR)
        FROM {rel.rated} r JOIN {rel.invoices} i USING (close_month, invoice_id)
        WHERE r.close_month = ? AND r.credit_price IS NOT NULL AND NOT r.is_trial
          AND r.billable_quantity > 0
        ORDER BY i.subscription_id, i.period_start, r.invoice_id, r.charge_no, r.segment_no, 2
        """,
        [month],
    ).fetchall()
    daily = _daily_for(con, rel, month, inputs, [(r[6], r[7], r[8], r[4], r[5]) for r in rows])
    return [(r[0], r[1], r[2], r[3], Span(r[4], r[5], daily.get((r[6], r[7], r[8])))) for r in rows]


def _daily_for(con, rel, month, inputs, lines: list[tuple]) -> dict:
    partial = partial_customers(inputs)
    keys = [(c, m, g, s, e) for c, m, g, s, e in lines if c in partial]
    return daily_usage(con, rel, month, [(c, m, s, e) for c, m, _, s, e in keys])


def with_lines(con, rel: Relations, month: str, inputs: CloseInputs) -> CloseInputs:
    """The inputs with each invoice's charge lines (int_billing_lines) as `draw.Line`s, for
    the customers that have credits (`CloseInputs.customers`): no other line is read."""
    rows = con.execute(
        f"""
        SELECT l.invoice_id, l.line_id, l.line_no, l.kind, k.charge_group, l.amount,
               l.period_start, l.period_end, k.taxable, k.credit_eligible,
               (SELECT any_value(d.applies_to) FROM {rel.discounts} d
                WHERE l.kind = 'discount' AND d.subscription_id = l.subscription_id
                  AND d.discount_code = l.fee_code),
               l.credit_price, l.customer_id, l.meter, cast(l.group_key AS VARCHAR)
        FROM {rel.lines} l JOIN {rel.line_kinds} k USING (kind)
        WHERE l.close_month = ? AND l.customer_id IN (SELECT unnest(?::VARCHAR[]))
        ORDER BY l.invoice_id, l.line_no
        """,
        [month, inputs.customers()],
    ).fetchall()
    partial = partial_customers(inputs)
    wanted = [(r[12], r[13], r[6], r[7]) for r in rows if r[3] == "usage" and r[12] in partial]
    daily = daily_usage(con, rel, month, wanted)
    by_invoice: dict[str, list[Line]] = defaultdict(list)
    for r in rows:
        days = daily.get((r[12], r[13], r[14])) if r[3] == "usage" and r[12] in partial else None
        span = Span(r[6], r[7], days if days is not None or r[3] != "usage" else ())
        by_invoice[r[0]].append(
            Line(
                r[1],
                r[2],
                r[3],
                r[4],
                r[5],
                span,
                taxable=r[8],
                credit_eligible=r[9],
                discount_applies_to=r[10],
                credit_price=r[11],
            )  # fmt: skip
        )
    invoices = [replace(i, lines=tuple(by_invoice.get(i.invoice_id, ()))) for i in inputs.invoices]
    return replace(inputs, invoices=invoices, _by_customer=None)


def coverage(con, rel: Relations, month: str) -> dict[tuple[str, str], list[tuple[str, Decimal]]]:
    """{(invoice_id, line_id): [(grant_id, units)]} of the month's credit-priced lines."""
    rows = con.execute(
        f"""
        SELECT c.invoice_id, l.line_id, c.grant_id, c.units
        FROM {rel.coverage} c
        JOIN {rel.lines} l ON l.close_month = c.close_month AND l.invoice_id = c.invoice_id
            AND l.usage_key = c.usage_key
        WHERE c.close_month = ?
        ORDER BY c.invoice_id, l.line_id
        """,
        [month],
    ).fetchall()
    out: dict[tuple[str, str], list] = defaultdict(list)
    for invoice_id, line_id, grant_id, units in rows:
        out[(invoice_id, line_id)].append((grant_id, units))
    return dict(out)


def concat(tables: list[pa.Table]) -> pa.Table:
    return pa.concat_tables(tables) if tables else pa.schema(COLUMNS).empty_table()
