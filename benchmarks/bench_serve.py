"""The read-only API's entitlement check under open-loop load: latency at increasing rates.

Run:  .venv/bin/python benchmarks/bench_serve.py --customers 10000 --rates 250,500,1000,2000 \
          --seconds 10

A snapshot of `--customers` customers x 6 features (2 boolean, 4 limits; decimal strings, as
the publisher writes them, with `write_atomically`) is published in a temporary workspace;
`serve()` (what `meterbook serve` runs: uvicorn, one process) starts in a subprocess, so the
load generator never shares its GIL. Then, at each rate, `GET /v1/customers/{id}/entitlements/
{feature}` with a random customer and feature is sent open-loop: request i is due at
start + i / rate whether or not earlier ones have been answered, and its latency runs from
that due time to the end of its answer, so a server that falls behind shows the queueing
(no coordinated omission). `--warmup` seconds at the same rate come first, not counted.

The load generator is a minimal HTTP/1.1 client on asyncio streams (uvloop when installed),
each request on one of `--connections` keep-alive connections taken from a pool (waiting for
a free one counts in the latency). httpx (`--client httpx`) costs ~1.4 ms of CPU per request
on this machine (httpcore tries to import sniffio, which is not installed, on every request),
so one process tops out below 1,000 requests/s and the 2 cores cannot hold enough of them.
`--processes N` splits each rate over N generator processes (request i to process i % N).

Printed per rate: requests sent, answers/s achieved, p50, p99, p99.9 and max latency from the
due time (ms), errors (a failed connection or a status other than 200), then two p99s that
split it: "lag", from the due time to the request's write (the generator's timers, which
uvloop keeps in whole milliseconds, or a wait for a free connection) and "svc", from the
write to the end of the answer; and the CPU share of the server and of the generators. With
`--reload-rate`, one more phase at that rate republishes the snapshot (os.replace of a file
prepared beforehand) every `--reload-every` seconds: what the server's reloads cost the
requests under way. Then one JSON line with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import multiprocessing
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestration.billing.entitlements.publish import (  # noqa: E402
    FORMAT,
    snapshot_path,
    write_atomically,
)

ROOT = Path(__file__).resolve().parents[1]
FEATURES = {
    "sso": ("boolean", None),
    "audit_log": ("boolean", None),
    "emails": ("limit", "emails"),
    "api_calls": ("limit", "api_calls"),
    "tokens": ("limit", "tokens"),
    "seats": ("limit", "seats"),
}
SERVER = """
import sys
from pathlib import Path
from orchestration.serve.server import serve
serve(Path(sys.argv[1]), port=0, on_ready=lambda url: print(url, flush=True))
"""


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


# -- the snapshot ----------------------------------------------------------------------------


def snapshot_document(customers: int, generation: int = 1) -> dict:
    """publish.py's format 1: every customer with every feature; limits and usage vary by
    customer, as_of names the generation."""
    as_of = f"2026-10-20T13:{generation // 60 % 60:02d}:{generation % 60:02d}Z"
    return {
        "format": FORMAT,
        "as_of": as_of,
        "published_at": as_of.replace("T13", "T14"),
        "features": {
            code: {"code": code, "name": code.replace("_", " ").title(), "type": kind, "meter": m}
            for code, (kind, m) in FEATURES.items()
        },
        "customers": {
            customer_id(i): _customer(customer_id(i), i, generation, as_of)
            for i in range(customers)
        },
    }


def customer_id(i: int) -> str:
    return f"cust_{i:06d}"


def _customer(cid: str, i: int, generation: int, as_of: str) -> dict:
    period = {"period_start": "2026-10-01", "period_end": "2026-11-01", "as_of": as_of}
    entitlements, meters = {}, {}
    for n, (code, (kind, meter)) in enumerate(FEATURES.items()):
        document = {"customer_id": cid, "feature": code, "type": kind, "has_access": True}
        document.update(limit=None, used=None, remaining=None, soft=False, **period)
        if kind == "limit":
            limit = Decimal(1000 * (1 + (i + n) % 50))
            used = Decimal((i * 7919 + n * 104729 + generation) % 60_000) / 4
            meters[meter] = str(used)
            remaining = max(limit - used, Decimal(0))
            document.update(limit=str(limit), used=str(used), remaining=str(remaining))
            document["soft"] = n % 2 == 0
        entitlements[code] = document
    usage = {"customer_id": cid, "currency": "USD", **period, "meters": meters}
    usage["draft"] = {"subtotal": f"{49 + i % 100}.00", "total": f"{49 + i % 100}.00"}
    return {"customer_id": cid, "name": f"Customer {i}", "currency": "USD"} | {
        "entitlements": entitlements,
        "usage": usage,
    }


# -- the server ------------------------------------------------------------------------------


class Server:
    """serve() in its own process; its CPU time read from /proc."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.process = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(home)], cwd=ROOT, stdout=subprocess.PIPE, text=True
        )
        self.url = self.process.stdout.readline().strip()
        if not self.url.startswith("http://"):
            self.process.kill()
            raise SystemExit(f"the server did not start (exit {self.process.wait()})")

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.process.pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


# -- the load generator ----------------------------------------------------------------------


class Connection:
    """One keep-alive HTTP/1.1 connection, one request at a time (no pipelining)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader = self.writer = None

    async def get(self, path: str) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\n\r\n".encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        status, length, closing = _head(head)
        await self.reader.readexactly(length)
        if closing:
            self.close()
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def aclose(self) -> None:
        self.close()


def _head(head: bytes) -> tuple[int, int, bool]:
    lines = head.lower().split(b"\r\n")
    headers = dict(line.split(b":", 1) for line in lines[1:] if b":" in line)
    length = int(headers.get(b"content-length", b"0"))
    return int(lines[0].split()[1]), length, headers.get(b"connection", b"").strip() == b"close"


class HttpxConnection:
    """The same through httpx, for comparison: one AsyncClient per connection slot."""

    def __init__(self, url: str) -> None:
        import httpx  # noqa: PLC0415

        self.client = httpx.AsyncClient(base_url=url, timeout=30)

    async def get(self, path: str) -> int:
        return (await self.client.get(path)).status_code

    def close(self) -> None:
        pass  # httpx replaces a broken connection itself

    async def aclose(self) -> None:
        await self.client.aclose()


@dataclass
class Plan:
    url: str
    rate: float
    seconds: float
    warmup: float
    start: float  # time.monotonic() of request 0 (one clock for every process on Linux)
    process: int
    processes: int
    connections: int
    customers: int
    client: str
    seed: int


def generate(plan: Plan, out) -> None:
    """One generator process: its share of the schedule, then its figures on `out`."""
    out.put(run_generator(lambda: _drive(plan)))


def run_generator(drive, gc_off: bool = True) -> dict:
    """A generator's coroutine (`drive()`) on uvloop when installed; its figures, with the
    process's CPU and wall seconds."""
    try:
        import uvloop  # noqa: PLC0415

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    if gc_off:
        # a full collection among a phase's 20,000 requests stopped this process for ~15 ms:
        # its requests would count it as the server's; a phase's garbage is small, kept
        gc.disable()
    cpu, wall = time.process_time(), time.monotonic()
    with runner:
        figures = runner.run(drive())
    figures["cpu_s"], figures["wall_s"] = time.process_time() - cpu, time.monotonic() - wall
    return figures


async def _drive(plan: Plan) -> dict:
    pool: asyncio.Queue = asyncio.Queue()
    host, port = plan.url.removeprefix("http://").rsplit(":", 1)
    for _ in range(plan.connections):
        slot = HttpxConnection(plan.url) if plan.client == "httpx" else Connection(host, int(port))
        pool.put_nowait(slot)
    rng = random.Random(plan.seed + plan.process)
    codes = list(FEATURES)
    total = int(plan.rate * (plan.warmup + plan.seconds))
    counted_from = plan.start + plan.warmup
    results: list[tuple[float, float, float, bool]] = []  # of the counted requests
    pending: set[asyncio.Task] = set()
    for i in range(plan.process, total, plan.processes):
        due = plan.start + i / plan.rate
        if due > (now := time.monotonic()):
            await asyncio.sleep(due - now)
        path = f"/v1/customers/{customer_id(rng.randrange(plan.customers))}/entitlements/"
        path += rng.choice(codes)
        task = asyncio.create_task(_one(pool, path, due, results if due >= counted_from else None))
        # not asyncio.gather over every task at the end: its callbacks, one per request, held
        # the loop for ~25 ms while the last requests waited to be sent
        pending.add(task)
        task.add_done_callback(pending.discard)
    if pending:
        await asyncio.wait(pending)
    ended = time.monotonic()
    while not pool.empty():
        await pool.get_nowait().aclose()
    return {
        "latencies": [r[0] for r in results if r[3]],
        "services": [r[2] for r in results if r[3]],
        "lags": [r[1] for r in results],
        "errors": sum(1 for r in results if not r[3]),
        "sent": len(results),
        "ended": ended,
    }


async def _one(pool: asyncio.Queue, path: str, due: float, results: list | None) -> None:
    """Appends (latency from the due time, how late it was sent, latency from the send,
    answered 200) to `results` (None: a warm-up request). time.monotonic, not the loop's
    time: uvloop's counts in whole milliseconds."""
    connection = await pool.get()
    sent = time.monotonic()
    try:
        ok = await connection.get(path) == 200
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
        connection.close()  # the next request on this slot opens a new connection
        ok = False
    except Exception:  # noqa: BLE001  httpx's errors, with --client httpx
        ok = False
    finally:
        pool.put_nowait(connection)
    done = time.monotonic()
    if results is not None:
        results.append((done - due, sent - due, done - sent, ok))


# -- a phase ---------------------------------------------------------------------------------


def phase(server: Server, args, rate: float, reloads: list[Path] | None = None) -> dict:
    """One rate, its generator processes started together; their figures merged."""
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    start = time.monotonic() + 1.0  # the processes start before request 0 is due
    plans = [
        Plan(server.url, rate, args.seconds, args.warmup, start, p, args.processes,
             args.connections, args.customers, args.client, args.seed)
        for p in range(args.processes)
    ]  # fmt: skip
    workers = [ctx.Process(target=generate, args=(plan, out)) for plan in plans]
    for worker in workers:
        worker.start()
    counted_from = start + args.warmup
    time.sleep(max(0.0, counted_from - time.monotonic()))
    server_cpu, wall = server.cpu_seconds(), time.monotonic()
    republished = 0
    if reloads:
        republished = republish(
            server.home, reloads, args.reload_every, counted_from + args.seconds
        )
    parts = [out.get() for _ in workers]
    server_cpu, wall = server.cpu_seconds() - server_cpu, time.monotonic() - wall
    for worker in workers:
        worker.join()
    figures = merge(parts, rate, counted_from, args.seconds)
    figures["server_cpu_pct"] = 100 * server_cpu / wall
    figures["reloads"] = republished
    return figures


def merge(parts: list[dict], rate: float, counted_from: float, seconds: float) -> dict:
    latencies = sorted(x for p in parts for x in p["latencies"])
    lags = sorted(x for p in parts for x in p["lags"])
    services = sorted(x for p in parts for x in p["services"])
    sent, errors = sum(p["sent"] for p in parts), sum(p["errors"] for p in parts)
    # the window runs to the last answer: a server that falls behind answers fewer per second
    window = max(seconds, max(p["ended"] for p in parts) - counted_from)
    return {
        "rate": rate,
        "sent": sent,
        "achieved_rps": (sent - errors) / window,
        "p50_ms": percentile(latencies, 0.50),
        "p99_ms": percentile(latencies, 0.99),
        "p999_ms": percentile(latencies, 0.999),
        "max_ms": latencies[-1] * 1000 if latencies else None,
        "errors": errors,
        "send_lag_p99_ms": percentile(lags, 0.99),
        "sent_to_answer_p99_ms": percentile(services, 0.99),
        "client_cpu_pct": sum(100 * p["cpu_s"] / p["wall_s"] for p in parts),
    }


def percentile(ordered: list[float], q: float) -> float | None:
    """The nearest-rank percentile, in ms."""
    if not ordered:
        return None
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)] * 1000


def prepare_reloads(home: Path, customers: int, seconds: float, every: float) -> list[Path]:
    """The files each reload renames over the snapshot, written before the phase so that only
    the server's reload is measured (two generations, alternately)."""
    texts = [
        json.dumps(snapshot_document(customers, g), sort_keys=True, separators=(",", ":"))
        for g in (2, 3)
    ]
    files = []
    for k in range(max(1, int(seconds / every))):
        path = snapshot_path(home).with_name(f".bench-reload-{k}.json")
        path.write_text(texts[k % 2])
        files.append(path)
    return files


def republish(home: Path, files: list[Path], every: float, until: float) -> int:
    """os.replace each file over the snapshot in turn, as write_atomically ends; how many."""
    done = 0
    for path in files:
        time.sleep(every)
        if time.monotonic() >= until - 1.0:  # the last reload's effect within the window
            break
        os.replace(path, snapshot_path(home))
        done += 1
    return done


# -- report ----------------------------------------------------------------------------------


def print_row(f: dict) -> None:
    def ms(value):
        return f"{value:>9.2f}" if value is not None else f"{'-':>9}"

    label = f"{f['rate']:,.0f}" + (f" +{f['reloads']} reloads" if f["reloads"] else "")
    print(
        f"{label:>17}{f['sent']:>9,}{f['achieved_rps']:>11,.0f}{ms(f['p50_ms'])}{ms(f['p99_ms'])}"
        f"{ms(f['p999_ms'])}{ms(f['max_ms'])}{f['errors']:>8,}{ms(f['send_lag_p99_ms'])}"
        f"{ms(f['sent_to_answer_p99_ms'])}"
        f"{f['server_cpu_pct']:>9.0f}%{f['client_cpu_pct']:>9.0f}%",
        flush=True,
    )


HEADER = (
    f"{'rate (req/s)':>17}{'sent':>9}{'achieved':>11}{'p50 ms':>9}{'p99 ms':>9}{'p99.9 ms':>9}"
    f"{'max ms':>9}{'errors':>8}{'lag p99':>9}{'svc p99':>9}{'server':>10}{'client':>10}"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--rates", default="250,500,1000,2000", help="requests/s, comma-separated")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured, per rate")
    parser.add_argument("--warmup", type=float, default=1.0, help="per rate, not counted")
    parser.add_argument("--connections", type=int, default=32, help="keep-alive, per process")
    parser.add_argument("--processes", type=int, default=1, help="load generator processes")
    parser.add_argument("--client", choices=("raw", "httpx"), default="raw")
    parser.add_argument("--reload-rate", type=float, default=1000.0, help="0: no reload phase")
    parser.add_argument("--reload-every", type=float, default=2.0, help="seconds")
    parser.add_argument("--seed", type=int, default=25)
    parser.add_argument("--workdir", type=Path, default=None, help="kept when given")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-serve-"))
    try:
        run(args, rates, work / "home")
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


def run(args, rates: list[float], home: Path) -> None:
    made = time.perf_counter()
    path = write_atomically(snapshot_path(home), snapshot_document(args.customers))
    say(
        f"snapshot: {args.customers:,} customers x {len(FEATURES)} features, "
        f"{path.stat().st_size / 2**20:.1f} MiB ({time.perf_counter() - made:.1f} s)"
    )
    reloads = []
    if args.reload_rate:
        reloads = prepare_reloads(home, args.customers, args.seconds, args.reload_every)
    started = time.perf_counter()
    server = Server(home)
    say(f"server {server.url} (pid {server.process.pid}) listening after "
        f"{time.perf_counter() - started:.1f} s, the snapshot loaded")  # fmt: skip
    rows = []
    try:
        print(HEADER, flush=True)
        for rate in rates:
            rows.append(phase(server, args, rate))
            print_row(rows[-1])
        if reloads:
            rows.append(phase(server, args, args.reload_rate, reloads))
            print_row(rows[-1])
            health = json.loads(urlopen_text(f"{server.url}/healthz"))
            say(f"after the reloads: /healthz {health}")
    finally:
        code = server.stop()
    say(f"server stopped by SIGTERM: exit {code}")
    print(json.dumps({"arguments": vars(args) | {"workdir": str(args.workdir)}, "rows": rows}))


def urlopen_text(url: str) -> str:
    from urllib.request import urlopen  # noqa: PLC0415

    with urlopen(url, timeout=10) as answer:
        return answer.read().decode()


if __name__ == "__main__":
    main()
