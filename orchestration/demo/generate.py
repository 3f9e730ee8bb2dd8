"""A seeded generator of realistic usage for the demo workspace.

About fifty customers of an AI platform (a few with sub-accounts, one in EUR, one in JPY),
with the traffic real producers send: retried requests that duplicate, sandbox calls, failed
requests, an internal QA account, a few malformed lines, an unknown customer, and a late file
that arrives after its month was finalized. Several formats: gzipped JSON lines, CSV with
`properties.<key>` columns, Parquet and CloudEvents.
"""

from __future__ import annotations

import csv
import gzip
import json
import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from importlib import resources
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from orchestration.billing.month import BillingMonth

SEED = 20261001
MONTHS = ("2026-10", "2026-11")
MODELS = ("large", "small", "vision")
ROUTES = ("/v1/chat", "/v1/embed", "/v1/files", "/v1/agents")


@dataclass
class DemoCustomer:
    id: str
    name: str
    plan: str
    currency: str = "USD"
    timezone: str = "UTC"
    tax_rate: str = "0"
    start: date = date(2026, 3, 1)
    size: float = 1.0  # scales this customer's traffic
    sub_accounts: list[str] = field(default_factory=list)


def demo_customers(rng: random.Random) -> list[DemoCustomer]:
    names = [
        "Acme",
        "Globex",
        "Initech",
        "Umbrella",
        "Hooli",
        "Stark",
        "Wayne",
        "Wonka",
        "Tyrell",
        "Cyberdyne",
        "Soylent",
        "Massive",
        "Pied Piper",
        "Aperture",
        "Black Mesa",
        "Vandelay",
        "Gringotts",
        "Monarch",
        "Oscorp",
        "Dunder",
        "Prestige",
        "Sterling",
        "Bluth",
        "Krusty",
        "Planet",
        "Nakatomi",
        "Virtucon",
        "Zorg",
        "Duff",
        "Ollivander",
        "Paper Street",
        "Rekall",
        "Spacely",
        "Cogswell",
        "Weyland",
        "Yoyodyne",
        "Ghostbusters",
        "Sirius",
        "Tessier",
        "Omni",
        "Hanso",
        "Dharma",
        "Abstergo",
        "Kaiba",
        "Shinra",
        "Vault-Tec",
    ]
    customers = []
    for i, name in enumerate(names):
        ident = name.lower().replace(" ", "-")
        plan = "pro" if i % 3 == 0 else "starter"
        start = date(2026, 3 + i % 7, 1)
        customers.append(
            DemoCustomer(
                ident,
                f"{name} Inc.",
                plan,
                start=start,
                size=rng.uniform(0.3, 2.5),
                tax_rate=rng.choice(["0", "0.08", "0.20"]),
            )
        )
    customers[0].sub_accounts = ["acme-research", "acme-eu"]
    customers[3].sub_accounts = ["umbrella-labs"]
    customers[6].start = date(2026, 10, 12)  # a mid-month start: partial in-advance fee
    customers.append(
        DemoCustomer("bergwerk", "Bergwerk GmbH", "pro_eu", "EUR", "Europe/Berlin", "0.19")
    )
    customers.append(
        DemoCustomer("sakura", "Sakura KK", "jp_standard", "JPY", "Asia/Tokyo", "0.10")
    )
    customers.append(DemoCustomer("newbie", "Newbie AI", "pro", start=date(2026, 11, 3), size=0.5))
    return customers


def catalog_documents(customers: list[DemoCustomer]) -> dict:
    entries, subscriptions = [], []
    for c in customers:
        entries.append(
            {
                "id": c.id,
                "name": c.name,
                "email": f"billing@{c.id}.test",
                "currency": c.currency,
                "timezone": c.timezone,
                "tax_rate": c.tax_rate,
                "address": [f"{10 + len(c.id)} {c.name} Street", f"{c.timezone.split('/')[-1]}"],
                "tax_id": f"TAX-{c.id.upper()}",
            }
        )
        entries += [{"id": s, "parent_id": c.id} for s in c.sub_accounts]
        sub = {"id": f"sub_{c.id}", "customer_id": c.id, "plan": c.plan, "start_date": c.start}
        if c.plan == "pro" and c.start < date(2026, 10, 1):
            sub["trial_end"] = c.start + timedelta(days=1)  # old customers: trial long over
        subscriptions.append(sub)
    entries.append({"id": "internal-qa", "name": "Internal QA", "billable": False})
    subscriptions[1]["discounts"] = [
        {"code": "launch20", "percent_off": "20", "applies_to": "usage", "periods": 12}
    ]
    subscriptions[2]["price_overrides"] = [
        {
            "meter": "tokens",
            "model": "per_unit",
            "unit_price": "0.011",
            "effective_from": date(2026, 10, 1),
        }
    ]
    # prepaid credits (SPEC 7): a paid pack topped up when it runs low, trial credits, one
    # expiring mid-month; the pro plan adds a monthly allowance (catalog.yaml)
    subscriptions[1]["auto_top_up"] = {"below": "100.00", "amount": "500.00"}
    grants = [
        {"id": "g_globex_pack", "customer_id": "globex", "kind": "paid", "amount": "300.00",
         "granted_on": date(2026, 10, 1)},
        {"id": "g_hooli_trial", "customer_id": "hooli", "kind": "promotional", "amount": "20.00",
         "granted_on": date(2026, 10, 1), "expires_on": date(2026, 10, 16)},
        {"id": "g_newbie_trial", "customer_id": "newbie", "kind": "promotional",
         "amount": "100.00", "granted_on": date(2026, 11, 3), "expires_on": date(2027, 2, 1)},
    ]  # fmt: skip
    return {"customers": entries, "subscriptions": subscriptions, "credit_grants": grants}


class EventFactory:
    """Events for one month; ids are unique per customer and stable for the seed."""

    def __init__(self, rng: random.Random, month: str):
        self.rng = rng
        self.month = month
        self.serial = 0
        self.start, self.end = BillingMonth.parse(month).bounds("UTC")

    def when(self, not_before: datetime | None = None) -> datetime:
        lo = max(self.start, not_before or self.start)
        span = (self.end - lo).total_seconds()
        return lo + timedelta(seconds=self.rng.uniform(0, span - 1))

    def event(self, customer: str, name: str, ts: datetime, props: dict) -> dict:
        self.serial += 1
        stamp = ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return {
            "event_id": f"evt_{self.month.replace('-', '')}_{self.serial:07d}",
            "customer_id": customer,
            "event_name": name,
            "timestamp": stamp,
            "properties": props,
            "source": self.rng.choice(["api-gateway", "worker", "batch"]),
        }

    def gateway(self, c: DemoCustomer, start: datetime) -> list[dict]:
        rng, out = self.rng, []
        accounts = [c.id, *c.sub_accounts]
        for _ in range(int(rng.uniform(150, 450) * c.size)):
            env = "sandbox" if rng.random() < 0.04 else "prod"
            status = "error" if rng.random() < 0.03 else "ok"
            props = {"env": env, "status": status, "route": rng.choice(ROUTES)}
            out.append(self.event(rng.choice(accounts), "api.request", self.when(start), props))
        for _ in range(int(rng.uniform(80, 300) * c.size)):
            props = {
                "env": "prod",
                "model": rng.choice(MODELS),
                "input_tokens": rng.randint(50, 4000),
                "output_tokens": rng.randint(10, 1200),
            }
            out.append(self.event(rng.choice(accounts), "llm.completion", self.when(start), props))
        return out

    def compute(self, c: DemoCustomer, start: datetime) -> list[dict]:
        rng, out = self.rng, []
        if c.plan in ("pro", "pro_eu"):
            for _ in range(int(rng.uniform(5, 40) * c.size)):
                props = {
                    "duration_ms": rng.randint(60_000, 7_200_000),
                    "gpu_count": rng.choice([1, 2, 4, 8]),
                }
                out.append(self.event(c.id, "gpu.usage", self.when(start), props))
        return out

    def agents(self, c: DemoCustomer, start: datetime) -> list[dict]:
        rng, out = self.rng, []
        if c.plan not in ("pro", "pro_eu"):
            return out
        pool = [f"agent-{c.id}-{i}" for i in range(rng.randint(2, 12))]
        for _ in range(int(rng.uniform(20, 80) * c.size)):
            out.append(
                self.event(
                    c.id, "agent.heartbeat", self.when(start), {"agent_id": rng.choice(pool)}
                )
            )
        seats = rng.randint(3, 25)
        for day in sorted(rng.sample(range(0, 27), 3)):
            at = max(start, self.start + timedelta(days=day, hours=9))
            seats = max(1, seats + rng.randint(-3, 4))
            out.append(self.event(c.id, "seats.changed", at, {"seats": seats}))
        return out


def _retries(rng: random.Random, events: list[dict], share: float) -> list[dict]:
    """Producers retry: about `share` of events are sent twice, byte for byte."""
    out = []
    for e in events:
        out.append(e)
        if rng.random() < share:
            out.append(e)
    return out


def _write_jsonl_gz(path: Path, events: list[dict], junk: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(e) for e in events]
    for i, text in enumerate(junk):
        lines.insert((i + 1) * len(lines) // (len(junk) + 1), text)
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")


def _write_csv(path: Path, events: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = ["duration_ms", "gpu_count"]
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            [
                "event_id",
                "customer_id",
                "event_name",
                "timestamp",
                *[f"properties.{k}" for k in keys],
            ]
        )
        for e in events:
            writer.writerow(
                [
                    e["event_id"],
                    e["customer_id"],
                    e["event_name"],
                    e["timestamp"],
                    *[e["properties"].get(k, "") for k in keys],
                ]
            )


def _write_parquet(path: Path, events: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table(
        {
            "event_id": [e["event_id"] for e in events],
            "customer_id": [e["customer_id"] for e in events],
            "event_name": [e["event_name"] for e in events],
            "timestamp": [e["timestamp"] for e in events],
            "properties": [json.dumps(e["properties"]) for e in events],
        }
    )
    pq.write_table(table, path)


def _write_cloudevents(path: Path, events: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for e in events:
            fh.write(
                json.dumps(
                    {
                        "specversion": "1.0",
                        "id": e["event_id"],
                        "source": "sdk",
                        "type": e["event_name"],
                        "subject": e["customer_id"],
                        "time": e["timestamp"],
                        "data": e["properties"],
                    }
                )
                + "\n"
            )


def write_catalog(catalog_dir: Path, customers: list[DemoCustomer]) -> None:
    catalog_dir.mkdir(parents=True, exist_ok=True)
    source = (
        resources.files("orchestration.demo").joinpath("catalog.yaml").read_text(encoding="utf-8")
    )
    (catalog_dir / "pricing.yaml").write_text(source, encoding="utf-8")
    customers_yaml = yaml.safe_dump(catalog_documents(customers), sort_keys=False, width=120)
    (catalog_dir / "customers.yaml").write_text(customers_yaml, encoding="utf-8")


def write_month(
    landing: Path, customers: list[DemoCustomer], month: str, rng: random.Random
) -> int:
    factory = EventFactory(rng, month)
    gateway, compute, agents = [], [], []
    for c in customers:
        start = max(factory.start, datetime.combine(c.start, datetime.min.time(), UTC))
        if start >= factory.end:
            continue
        gateway += factory.gateway(c, start)
        compute += factory.compute(c, start)
        agents += factory.agents(c, start)
    qa = [
        factory.event("internal-qa", "api.request", factory.when(), {"env": "prod", "status": "ok"})
        for _ in range(25)
    ]
    stranger = [
        factory.event("stranger-co", "api.request", factory.when(), {"env": "prod", "status": "ok"})
        for _ in range(3)
    ]
    rng.shuffle(gateway)
    junk = [
        '{"event_id": "evt_broken", "customer_id": "acme", ',
        "not json at all",
        '{"customer_id": "acme", "event_name": "api.request", "timestamp": "2026-10-05T10:00:00Z"}',
    ]
    _write_jsonl_gz(
        landing / "gateway" / f"{month}.jsonl.gz",
        _retries(rng, gateway + qa + stranger, 0.02),
        junk,
    )
    _write_csv(landing / "gpu" / f"{month}.csv", compute)
    _write_parquet(
        landing / "agents" / f"{month}.parquet",
        [e for e in agents if e["event_name"] == "seats.changed"],
    )
    _write_cloudevents(
        landing / "agents" / f"{month}-heartbeats.jsonl",
        [e for e in agents if e["event_name"] == "agent.heartbeat"],
    )
    return len(gateway) + len(compute) + len(agents) + len(qa) + len(stranger)


def write_late_file(
    landing: Path, customers: list[DemoCustomer], month: str, rng: random.Random
) -> int:
    """A producer's backlog for `month`, replayed after that month was finalized."""
    factory = EventFactory(rng, month)
    factory.serial = 9_000_000  # replayed events have ids of their own
    late = []
    for c in customers[:4]:
        for _ in range(40):
            props = {
                "env": "prod",
                "model": "large",
                "input_tokens": rng.randint(500, 3000),
                "output_tokens": 200,
            }
            late.append(factory.event(c.id, "llm.completion", factory.when(), props))
    path = landing / "late" / f"{month}-replay.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(e) + "\n" for e in late), encoding="utf-8")
    return len(late)
