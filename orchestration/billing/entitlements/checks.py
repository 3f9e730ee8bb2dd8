"""Entitlements reconcile (SPEC 9): the published snapshot against the usage models, and the
period's quantity against its days. Each returns (passed, metadata) like the close's checks."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import duckdb

from orchestration.warehouse.models import model_exists, with_refs

# aggregations whose days add up to the period (the others' days are their own aggregates)
_ADDITIVE = ("count", "sum")


def check_days_add_up(con: duckdb.DuckDBPyConnection) -> tuple[bool, dict[str, Any]]:
    """For count and sum meters, each period's quantity = the sum of its days."""
    if not model_exists(con, "fct_current_period_usage"):
        return True, {"checked": 0}
    rows = con.execute(with_refs(_DAYS_VS_PERIOD), [list(_ADDITIVE)]).fetchall()
    problems = [
        {"window_id": w, "meter": m, "period": str(p), "days": str(d)} for w, m, p, d in rows
    ]
    return not problems, {"mismatches": len(problems), "first": problems[:20]}


_DAYS_VS_PERIOD = """
SELECT u.window_id, u.meter_code, u.quantity, coalesce(sum(d.quantity), 0) AS days
FROM {{ ref('fct_current_period_usage') }} AS u
JOIN {{ ref('stg_catalog__meters') }} AS m ON m.meter_code = u.meter_code
LEFT JOIN {{ ref('fct_current_period_daily_usage') }} AS d
  ON d.window_id = u.window_id AND d.meter_code = u.meter_code
WHERE m.aggregation IN (SELECT unnest(?))
GROUP BY ALL
HAVING u.quantity <> coalesce(sum(d.quantity), 0)
"""


def check_snapshot(
    con: duckdb.DuckDBPyConnection, snapshot: dict[str, Any] | None
) -> tuple[bool, dict[str, Any]]:
    """Every limit answer of the published snapshot says what the usage model says it used,
    and its access and remaining follow from its limit (a second computation of both)."""
    if snapshot is None:
        return False, {"problem": "no snapshot was published"}
    used = _model_quantities(con)
    features = snapshot["features"]
    problems = []
    for customer in snapshot["customers"].values():
        for answer in customer["entitlements"].values():
            if features[answer["feature"]]["type"] != "limit" or not answer["subscription_id"]:
                continue
            key = (answer["subscription_id"], answer["period_start"], answer["feature"])
            expected = used.get((key[0], key[1], features[answer["feature"]]["meter"]))
            if problem := _answer_problem(answer, expected):
                problems.append(
                    {"customer_id": answer["customer_id"], "feature": key[2], **problem}
                )
    return not problems, {"answers_wrong": len(problems), "first": problems[:20]}


def _model_quantities(con) -> dict[tuple[str, str, str], Decimal]:
    if not model_exists(con, "fct_current_period_usage"):
        return {}
    rows = con.execute(
        with_refs(
            "SELECT subscription_id, split_part(window_id, ':', -1), meter_code, quantity "
            "FROM {{ ref('fct_current_period_usage') }}"
        )
    ).fetchall()
    return {(s, start, m): Decimal(q) for s, start, m, q in rows}


def _answer_problem(answer: dict, expected: Decimal | None) -> dict | None:
    used = Decimal(answer["used"]) if answer["used"] is not None else None
    if expected is None or used != expected:
        return {"published_used": answer["used"], "model_used": str(expected)}
    if answer["limit"] is None:
        return None
    limit = Decimal(answer["limit"])
    remaining = max(Decimal(0), limit - used)
    access = answer["soft"] or used < limit
    if Decimal(answer["remaining"]) != remaining or answer["has_access"] != access:
        return {
            "limit": answer["limit"],
            "used": answer["used"],
            "has_access": answer["has_access"],
        }
    return None
