"""A snapshot replaced while requests run never yields an error or a torn read.

A writer publishes generations 1..100 (write_atomically, as the publisher does) while four
clients ask continuously; generation g has every limit feature at used = g, remaining =
limit - g and as_of naming g. Every answer must be a 200 from one generation, and each
client, asking one request after another, must never see a generation older than one it
has already seen.
"""

from __future__ import annotations

import threading
import time
from decimal import Decimal
from itertools import cycle

import httpx
from serve_snapshots import CUSTOMERS, LIMITS, generation_of, publish

from orchestration.serve.server import running_server

GENERATIONS = 100
CLIENTS = 4


def test_replacing_the_snapshot_under_load_never_tears_an_answer(tmp_path):
    home = tmp_path / "home"
    publish(home, generation=0)
    with running_server(home, poll_seconds=0.005) as url:
        written = threading.Event()
        clients = [Client(url, written, n) for n in range(CLIENTS)]
        for client in clients:
            client.start()
        for generation in range(1, GENERATIONS + 1):
            publish(home, generation=generation)
            time.sleep(0.01)
        written.set()
        for client in clients:
            client.join(10)
    for client in clients:
        assert not client.problems, client.problems[:5]
        assert client.answers > 50
        assert client.seen[-1] == GENERATIONS  # every client ends on the last one
    seen = {g for client in clients for g in client.seen}
    assert len(seen) > 10, f"the clients saw only generations {sorted(seen)}"


class Client(threading.Thread):
    def __init__(self, url: str, written: threading.Event, n: int) -> None:
        super().__init__(name=f"client-{n}", daemon=True)
        self.url, self.written = url, written
        self.customers = cycle(CUSTOMERS[n % len(CUSTOMERS) :] + CUSTOMERS[: n % len(CUSTOMERS)])
        self.answers, self.seen, self.problems = 0, [0], []

    def run(self) -> None:
        checks = cycle((self.feature, self.listing, self.usage))
        deadline = None
        with httpx.Client(base_url=self.url, timeout=5) as http:
            # after the last write: until the last generation shows (the store polls for it)
            while not (self.written.is_set() and self.seen[-1] == GENERATIONS):
                if self.written.is_set():
                    deadline = deadline or time.monotonic() + 5
                    if time.monotonic() > deadline:
                        self.problems.append(f"generation {GENERATIONS} never served")
                        return
                customer = next(self.customers)
                try:
                    generation = next(checks)(http, customer)
                except Exception as exc:  # noqa: BLE001 (each one is a finding, kept)
                    self.problems.append(f"{customer}: {type(exc).__name__}: {exc}")
                    return
                self.answers += 1
                if generation < self.seen[-1]:
                    self.problems.append(
                        f"{customer}: generation {generation} after {self.seen[-1]}"
                    )
                self.seen.append(generation)

    def feature(self, http: httpx.Client, customer: str) -> int:
        code = "emails" if self.answers % 2 else "api_calls"
        return consistent(ok(http.get(f"/v1/customers/{customer}/entitlements/{code}")))

    def listing(self, http: httpx.Client, customer: str) -> int:
        body = ok(http.get(f"/v1/customers/{customer}/entitlements"))
        generations = {consistent(doc) for doc in body["entitlements"] if doc["type"] == "limit"}
        generations.add(generation_of(body["as_of"]))
        assert len(generations) == 1, f"one answer from generations {generations}"
        return generations.pop()

    def usage(self, http: httpx.Client, customer: str) -> int:
        body = ok(http.get(f"/v1/customers/{customer}/usage"))
        generation = generation_of(body["as_of"])
        assert body["meters"]["emails"] == str(generation), body
        return generation


def ok(answer: httpx.Response) -> dict:
    assert answer.status_code == 200, f"{answer.status_code} {answer.text}"
    return answer.json()


def consistent(doc: dict) -> int:
    """The generation of one feature's answer, checked whole: used + remaining = limit, and
    used and as_of name the same generation."""
    assert doc["limit"] == LIMITS[doc["feature"]], doc
    assert Decimal(doc["used"]) + Decimal(doc["remaining"]) == Decimal(doc["limit"]), doc
    generation = generation_of(doc["as_of"])
    assert doc["used"] == str(generation), doc
    return generation
