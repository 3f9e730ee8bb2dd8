"""The line-kind registry, read from the same seed dbt orders and taxes lines by
(`dbt_project/seeds/line_kinds.csv`): one place says what each kind of invoice line is."""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass

from orchestration.workspace import DBT_PROJECT_DIR

SEED = DBT_PROJECT_DIR / "seeds" / "line_kinds.csv"


@dataclass(frozen=True)
class LineKind:
    kind: str
    sort_rank: int
    label: str
    charge_group: str  # usage | fixed_fees | adjustment | discount | credit | credit_purchase
    taxable: bool
    discountable: bool
    credit_eligible: bool
    revenue_rule: str


@functools.cache
def line_kinds() -> dict[str, LineKind]:
    """Every kind, by name, in sort_rank order."""
    with SEED.open(newline="", encoding="utf-8") as seed:
        rows = [_line_kind(row, no) for no, row in enumerate(csv.DictReader(seed), start=2)]
    return {k.kind: k for k in sorted(rows, key=lambda k: k.sort_rank)}


def label(kind: str) -> str:
    """What the invoice document prints for `kind` (the kind itself when not registered)."""
    found = line_kinds().get(kind)
    return found.label if found else kind


def kinds_in_group(charge_group: str) -> tuple[str, ...]:
    """The kinds of one charge group, in sort_rank order (e.g. 'usage': what late events re-rate)."""
    return tuple(k.kind for k in line_kinds().values() if k.charge_group == charge_group)


def _line_kind(row: dict[str, str], line_no: int) -> LineKind:
    try:
        flags = {name: _flag(row[name]) for name in ("taxable", "discountable", "credit_eligible")}
        return LineKind(
            kind=row["kind"],
            sort_rank=int(row["sort_rank"]),
            label=row["label"],
            charge_group=row["charge_group"],
            revenue_rule=row["revenue_rule"],
            **flags,
        )
    except (KeyError, ValueError) as exc:
        raise ValueError(f"{SEED}:{line_no}: {exc}") from exc


def _flag(text: str) -> bool:
    if text not in ("true", "false"):
        raise ValueError(f"expected true or false, got {text!r}")
    return text == "true"
