"""POST /v1/events under open-loop load, then the lag from a POST to the entitlement snapshot.

Run:  .venv/bin/python benchmarks/bench_events_api.py --customers 10000 \
          --rates 1000,2000,5000,10000 --seconds 10 --e2e-rate 2000 --e2e-seconds 600

A temporary workspace gets bench_pipeline's catalog (`--customers` customers, one subscription
each from 2026-01-01 with no end, 20 meters over `event.0` .. `event.19`), plus `bench.yaml`:
one API key (`settings.api_keys`, its SHA-256), `settings.events_api` with a backlog bound
that never pushes back (and `--rotate-seconds` when given), and one more customer,
`bench_marker`, whose subscription counts the markers (below). `meterbook serve` (`serve()`,
uvicorn) runs in a subprocess of its own, so the load generator never shares its GIL.

Phase 1, request latency: at each rate of `--rates` (events/s), batches of `--batch` events
(NDJSON, random customers and event names, timestamps = the send time, UTC, to the ms) are
POSTed open-loop: request i is due at start + i * batch / rate whether or not earlier ones
have been answered, and its latency runs from that due time to the end of its answer
(bench_serve's generator and minimal HTTP/1.1 client, in a forked process; no coordinated
omission; `--connections` keep-alive connections taken last-in-first-out, one idle for 4 s
reopened first, as a client that does not know the server's keep-alive must).
`--warmup` seconds at the same rate come first, not counted. Printed per rate:
requests, events/s accepted, p50/p99/max latency (ms), errors (no answer, or not 202),
refused events, the p99 of the generator's own lateness ("lag") and of write-to-answer
("svc"), and the CPU share of the server and of the generator. The landing files rotate
meanwhile; nothing is ingested. `--rates ''` skips this phase.

Phase 2, end to end: once the last open landing file has rotated, `meterbook ingest` ingests
phase 1's events (it also makes the warehouse and publishes the first snapshot); then
`meterbook follow` (subprocess; `--follow-interval`, else the catalog's follow_seconds) runs
while events are POSTed at `--e2e-rate` for `--e2e-seconds` over all the customers. Every
`--marker-every` seconds the first event of a batch is a marker: a `bench_marker` event of a
`count` meter, so the snapshot's count of that customer's meter is the number of markers it
reflects. The bench polls `GET /v1/customers/bench_marker/usage` every `--poll` seconds (what
a client sees: the server's loaded snapshot); marker k (in send order, accepted ones only) is
reflected at the first poll where the count reaches k + 1, and its lag runs from its
request's due time to that poll. The snapshot's `as_of` (the usage watermark) is kept to the
second only, so "watermark >= the event's timestamp" misses an event of the watermark's own
second until the next cycle: the lag by the watermark is printed beside, as an upper bound.
After the load the bench waits until every marker is reflected and the follow has reported
every acknowledged event ingested (or `--drain-seconds`), then stops it with SIGTERM (SIGABRT
after 60 s: it runs with PYTHONFAULTHANDLER, so its stacks are printed). Printed: events
sent/accepted, request latency under the ingest, the marker lag p50/p99/max, every follow
cycle (its output line's files, lines, watermark and lag_seconds; the time since the previous
cycle's line, the cycle time when cycles run back to back; the Dagster run's wall time and
slowest steps from the workspace's run stats), the initial ingest's time, CPU shares (the
follow's with its dbt subprocesses), and whether every acknowledged event was ingested.
`--e2e-rate 0` skips this phase.

Also the machine (cores, CPU, Python, load average, the workspace's filesystem); then one
JSON line with every figure. `--keep` keeps the workspace (its path is printed).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import multiprocessing
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_ingest import EVENT_NAMES  # noqa: E402
from bench_pipeline import catalog_document  # noqa: E402
from bench_serve import Connection, Server, _head, percentile, run_generator, say  # noqa: E402

from orchestration.serve.api_keys import key_hash, new_key  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MARKER = "bench_marker"
MARKER_NAME, MARKER_METER = "event.1", "m01"  # bench_pipeline: odd meters count their events
EVENTS_PATH = "/v1/events"
# the workspace comes from --home; anything else in the environment would point elsewhere
UNSET = ("METERBOOK_NOW", "METERBOOK_HOME", "METERBOOK_WAREHOUSE", "DAGSTER_HOME")
CYCLE_LINE = re.compile(
    r"(\d+) file\(s\), (\d+) line\(s\) ingested; usage as of (\S+); lag ([\d.]+) s "
    r"\(Dagster run ([0-9a-f-]+)\)"
)


# -- the workspace ---------------------------------------------------------------------------


def make_workspace(home: Path, customers: int, rotate_seconds: float | None) -> str:
    """bench_pipeline's catalog plus bench.yaml; the API key (shown nowhere else)."""
    import yaml  # noqa: PLC0415

    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    folder = home / "catalog"
    folder.mkdir(parents=True)
    # subscriptions from 2026-01-01 with no end: active now, the current period this month
    document = catalog_document(customers)
    (folder / "catalog.yaml").write_text(yaml.dump(document, Dumper=dumper))
    key = new_key()
    events_api: dict = {"max_backlog_bytes": 1 << 40}  # never a 429 here
    if rotate_seconds:
        events_api["rotate_seconds"] = str(rotate_seconds)
    bench = {
        "customers": [{"id": MARKER, "tax_rate": "0.2"}],
        "subscriptions": [
            {
                "id": f"sub_{MARKER}",
                "customer_id": MARKER,
                "plan": "usage",
                "start_date": "2026-01-01",
            }
        ],  # fmt: skip
        "settings": {
            "api_keys": [{"id": "bench", "sha256": key_hash(key)}],
            "events_api": events_api,
        },
    }
    (folder / "bench.yaml").write_text(yaml.dump(bench, Dumper=dumper))
    from orchestration.catalog import load_catalog  # noqa: PLC0415

    load_catalog(folder)  # a catalog that does not load fails here, not in the server's log
    return key


def cli(home: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "orchestration.cli", "--home", str(home), *args]


# -- the load generator ----------------------------------------------------------------------


class PostConnection(Connection):
    """bench_serve's keep-alive connection, sending a body. A server closes a connection idle
    for its keep-alive (uvicorn's default 5 s; `meterbook serve` keeps 75 s); one idle for
    IDLE_SECONDS is reopened before it is used, as httpx does (keepalive_expiry), else a
    request written into a connection the server is closing fails."""

    IDLE_SECONDS = 4.0
    used = 0.0

    async def post(self, path: str, body: bytes, key: str) -> tuple[int, bytes]:
        if self.writer is not None and time.monotonic() - self.used > self.IDLE_SECONDS:
            self.close()
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/x-ndjson\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        status, length, closing = _head(head)
        answer = await self.reader.readexactly(length)
        self.used = time.monotonic()
        if closing:
            self.close()
        return status, answer


@dataclass
class Load:
    url: str
    key: str
    rate: float  # events/s
    batch: int
    seconds: float
    warmup: float
    connections: int
    customers: int
    seed: int
    tag: str  # event ids: <tag>-<n>, markers <tag>-m<k>
    marker_every: float = 0.0  # seconds; 0: no marker
    gc_off: bool = True


EVENT = (
    '{"event_id":"%s-%d","customer_id":"cust_%d","event_name":"event.%d","timestamp":"%s",'
    '"properties":{"input_tokens":%d,"output_tokens":%d,"model":"large","env":"prod"},'
    '"source":"bench"}'
)
MARKER_EVENT = (
    '{"event_id":"%s-m%d","customer_id":"' + MARKER + '","event_name":"' + MARKER_NAME + '",'
    '"timestamp":"%s","properties":{},"source":"bench"}'
)


def generate(load: Load, out) -> None:
    """One generator process: the schedule, then its figures on `out`."""
    # the parent stops it (SIGTERM, its default); a Ctrl-C is the parent's to handle
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    out.put(run_generator(lambda: _drive(load), gc_off=load.gc_off))


async def _drive(load: Load) -> dict:
    import random  # noqa: PLC0415

    # last in, first out: the connections in use are the fewest the rate needs, kept warm
    pool: asyncio.LifoQueue = asyncio.LifoQueue()
    host, port = load.url.removeprefix("http://").rsplit(":", 1)
    for _ in range(load.connections):
        pool.put_nowait(PostConnection(host, int(port)))
    rng = random.Random(load.seed)
    every = load.batch / load.rate
    total = int((load.warmup + load.seconds) / every)
    start = time.monotonic() + 0.2
    counted_from = start + load.warmup
    results: list[tuple] = []  # counted requests: (latency, lateness, service, status, accepted)
    markers: list[list] = []  # [k, due, wall timestamp, accepted]
    pending: set[asyncio.Task] = set()
    tally = {"accepted": 0}  # every request's, warm-up included: what the ingest will read
    next_marker, seq = counted_from, 0
    for i in range(total):
        due = start + i * every
        if due > (now := time.monotonic()):
            await asyncio.sleep(due - now)
        wall = time.time()
        stamp = datetime.fromtimestamp(wall, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        lines = []
        marker = None
        if load.marker_every and due >= next_marker:
            marker = [len(markers), due, wall, False]
            markers.append(marker)
            lines.append(MARKER_EVENT % (load.tag, marker[0], stamp))
            next_marker += load.marker_every
        for _ in range(load.batch - len(lines)):
            lines.append(
                EVENT % (load.tag, seq, rng.randrange(load.customers), rng.randrange(EVENT_NAMES),
                         stamp, rng.randrange(4000), rng.randrange(1200))
            )  # fmt: skip
            seq += 1
        body = "\n".join(lines).encode()
        counted = results if due >= counted_from else None
        task = asyncio.create_task(
            _one(pool, load.key, body, len(lines), due, counted, marker, tally)
        )
        pending.add(task)
        task.add_done_callback(pending.discard)
    if pending:
        await asyncio.wait(pending)
    ended = time.monotonic()
    while not pool.empty():
        await pool.get_nowait().aclose()
    return {
        "results": results,
        "markers": markers,
        "counted_from": counted_from,
        "ended": ended,
        "sent_events": seq + len(markers),
        "accepted_all": tally["accepted"],
    }


async def _one(pool, key, body, events, due, results, marker, tally) -> None:
    connection = await pool.get()
    sent = time.monotonic()
    status, accepted = 0, 0
    try:
        status, answer = await connection.post(EVENTS_PATH, body, key)
        if status == 202:
            accepted = json.loads(answer)["accepted"]
            tally["accepted"] += accepted
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
        connection.close()  # the next request on this slot opens a new connection
    finally:
        pool.put_nowait(connection)
    done = time.monotonic()
    if marker is not None:
        # the marker is the batch's first line: accepted unless the batch refused some
        marker[3] = status == 202 and accepted == events
    if results is not None:
        results.append((done - due, sent - due, done - sent, status, accepted, events))


def start_load(load: Load):
    """The generator in a forked process; (process, queue)."""
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    worker = ctx.Process(target=generate, args=(load, out), daemon=True)
    worker.start()
    return worker, out


def _counts(values) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts


def request_figures(parts: dict, rate: float, seconds: float) -> dict:
    results = parts["results"]
    ok = [r for r in results if r[3] == 202]
    latencies = sorted(r[0] for r in ok)
    accepted = sum(r[4] for r in ok)
    window = max(seconds, parts["ended"] - parts["counted_from"])
    return {
        "rate": rate,
        "requests": len(results),
        "events_sent": sum(r[5] for r in results),
        "events_accepted": accepted,
        "achieved_events_per_s": accepted / window,
        "p50_ms": percentile(latencies, 0.50),
        "p99_ms": percentile(latencies, 0.99),
        "max_ms": latencies[-1] * 1000 if latencies else None,
        "errors": len(results) - len(ok),
        "error_statuses": _counts(str(r[3]) for r in results if r[3] != 202),  # 0: no answer
        "refused_events": sum(r[5] - r[4] for r in ok),
        "send_lag_p99_ms": percentile(sorted(r[1] for r in results), 0.99),
        "sent_to_answer_p99_ms": percentile(sorted(r[2] for r in ok), 0.99),
        "client_cpu_pct": 100 * parts["cpu_s"] / parts["wall_s"],
        "events_accepted_with_warmup": parts["accepted_all"],
    }


# -- phase 1 ---------------------------------------------------------------------------------


HEADER = (
    f"{'rate (ev/s)':>12}{'requests':>10}{'achieved':>11}{'p50 ms':>9}{'p99 ms':>9}"
    f"{'max ms':>9}{'errors':>8}{'refused':>9}{'lag p99':>9}{'svc p99':>9}{'server':>9}"
    f"{'client':>9}"
)


def _ms(value) -> str:
    return f"{value:>9.2f}" if value is not None else f"{'-':>9}"


def print_row(f: dict) -> None:
    print(
        f"{f['rate']:>12,.0f}{f['requests']:>10,}{f['achieved_events_per_s']:>11,.0f}"
        f"{_ms(f['p50_ms'])}{_ms(f['p99_ms'])}{_ms(f['max_ms'])}{f['errors']:>8,}"
        f"{f['refused_events']:>9,}{_ms(f['send_lag_p99_ms'])}{_ms(f['sent_to_answer_p99_ms'])}"
        f"{f['server_cpu_pct']:>8.0f}%{f['client_cpu_pct']:>8.0f}%"
        + (f"  errors by status (0: no answer): {f['error_statuses']}" if f["errors"] else ""),
        flush=True,
    )


def phase1(server: Server, args, key: str, rate: float, n: int, running: list) -> dict:
    load = Load(server.url, key, rate, args.batch, args.seconds, args.warmup, args.connections,
                args.customers, args.seed + n, f"p1r{n}")  # fmt: skip
    worker, out = start_load(load)
    running.append(worker)
    server_cpu, wall = server.cpu_seconds(), time.monotonic()
    parts = out.get()
    server_cpu, wall = server.cpu_seconds() - server_cpu, time.monotonic() - wall
    worker.join()
    running.remove(worker)
    figures = request_figures(parts, rate, args.seconds)
    figures["server_cpu_pct"] = 100 * server_cpu / wall
    return figures


# -- phase 2 ---------------------------------------------------------------------------------


class Follow:
    """`meterbook follow` in a subprocess; its output lines kept with their arrival time."""

    def __init__(self, home: Path, interval: float | None) -> None:
        command = cli(home, "follow") + (["--interval", f"{interval:g}"] if interval else [])
        env = dict(os.environ, PYTHONFAULTHANDLER="1")  # SIGABRT dumps its threads (stop)
        self.process = subprocess.Popen(
            command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        self.lines: list[tuple[float, str]] = []  # appended by the thread, printed by main
        self.shown = 0
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def wait_ready(self, seconds: float = 120) -> None:
        """Until its first line ("following ..."), printed once the catalog is loaded."""
        deadline = time.monotonic() + seconds
        while not self.lines:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"meterbook follow did not start: {self.lines}")
            time.sleep(0.05)

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append((time.monotonic(), line.rstrip()))

    def show(self, since: float) -> None:
        while self.shown < len(self.lines):
            at, text = self.lines[self.shown]
            say(f"follow (+{max(0.0, at - since):.1f} s): {text.removeprefix('meterbook: ')}")
            self.shown += 1

    def cpu_seconds(self) -> float:
        """Its CPU and its waited-for children's (dbt)."""
        with open(f"/proc/{self.process.pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")

    def cycles(self, since: float) -> list[dict]:
        """Each ingest's line; `after_s`: since the previous one's (the cycle time, when the
        cycles run back to back: longer than the interval)."""
        found, previous = [], None
        for at, text in self.lines:
            match = CYCLE_LINE.search(text)
            if match:
                files, lines, watermark, lag, run_id = match.groups()
                after = None if previous is None else round(at - previous, 1)
                previous = at
                found.append({"ended_at_s": round(at - since, 1), "after_s": after,
                              "files": int(files),
                              "lines": int(lines), "usage_watermark": watermark,
                              "lag_seconds": float(lag), "run_id": run_id})  # fmt: skip
        return found

    def stop(self, seconds: float = 60) -> int:
        """SIGTERM; if it has not ended after `seconds`, SIGABRT (its threads' stacks come out
        as its last lines), then SIGKILL."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(seconds)
        except subprocess.TimeoutExpired:
            say(f"meterbook follow still runs {seconds:g} s after SIGTERM: SIGABRT for its stacks")
            self.process.send_signal(signal.SIGABRT)
        try:
            code = self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self.thread.join(5)
        return code


class Poller:
    """The marker customer's usage as the server answers it, on one keep-alive connection."""

    def __init__(self, url: str) -> None:
        self.host, port = url.removeprefix("http://").rsplit(":", 1)
        self.port = int(port)
        self.connection: http.client.HTTPConnection | None = None

    def read(self) -> tuple[int, float | None] | None:
        """(markers counted, the watermark as epoch seconds), or None (no snapshot yet)."""
        try:
            if self.connection is None:
                self.connection = http.client.HTTPConnection(self.host, self.port, timeout=10)
            self.connection.request("GET", f"/v1/customers/{MARKER}/usage")
            answer = self.connection.getresponse()
            body = answer.read()
        except (OSError, http.client.HTTPException):
            self.connection = None
            return None
        if answer.status != 200:
            return None
        usage = json.loads(body)
        count = 0
        for subscription in usage.get("subscriptions", []):
            for meter in subscription["meters"]:
                if meter["meter"] == MARKER_METER:
                    count += int(Decimal(meter["quantity"]))
        return count, _epoch(usage.get("as_of"))


def _epoch(iso: str | None) -> float | None:
    if not iso:
        return None
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def status(url: str) -> dict:
    from urllib.request import urlopen  # noqa: PLC0415

    with urlopen(f"{url}/v1/status", timeout=10) as answer:
        return json.loads(answer.read())


def initial_ingest(server: Server, args, home: Path) -> dict:
    """Phase 1's last file rotated, then `meterbook ingest` (the warehouse, the first
    snapshot); until the server serves the marker customer's usage."""
    deadline = time.monotonic() + 60
    while status(server.url)["events_api"]["unrotated_bytes"] and time.monotonic() < deadline:
        time.sleep(0.25)
    started = time.monotonic()
    done = subprocess.run(cli(home, "ingest"), cwd=ROOT, capture_output=True, text=True)
    seconds = time.monotonic() - started
    if done.returncode:
        raise SystemExit(f"meterbook ingest failed ({done.returncode}):\n{done.stderr}")
    ingested = json.loads((home / "published" / "ingest.json").read_text())
    say(f"initial `meterbook ingest`: {ingested['lines_read']:,} lines in "
        f"{ingested['files']} file(s), {seconds:.1f} s")  # fmt: skip
    poller, deadline = Poller(server.url), time.monotonic() + 120
    while (baseline := poller.read()) is None:
        if time.monotonic() > deadline:
            raise SystemExit("the server serves no snapshot 120 s after the ingest")
        time.sleep(0.2)
    return {"seconds": seconds, "lines": ingested["lines_read"], "files": ingested["files"],
            "baseline_markers": baseline[0]}  # fmt: skip


def phase2(server: Server, args, key: str, home: Path, running: list, earlier: int) -> dict:
    """`earlier`: the events phase 1 had acknowledged."""
    first = initial_ingest(server, args, home)
    follow = Follow(home, args.follow_interval)
    running.append(follow)
    follow.wait_ready()
    interval = args.follow_interval or 30.0
    load = Load(server.url, key, args.e2e_rate, args.batch, args.e2e_seconds, 0.0,
                args.connections, args.customers, args.seed + 1000, "p2",
                marker_every=args.marker_every, gc_off=False)  # fmt: skip
    poller = Poller(server.url)
    since = time.monotonic()
    server_cpu, follow_cpu = server.cpu_seconds(), follow.cpu_seconds()
    worker, out = start_load(load)
    running.append(worker)
    say(f"end to end: {args.e2e_rate:,.0f} events/s for {args.e2e_seconds:g} s over "
        f"{args.customers:,} customers, a marker every {args.marker_every:g} s; follow every "
        f"{interval:g} s")  # fmt: skip
    polls: list[tuple[float, float, int, float | None]] = []  # (monotonic, wall, count, as_of)
    parts, drain_until, last_note = None, None, since
    while True:
        if parts is None:
            try:
                parts = out.get(timeout=args.poll)
            except Exception:  # noqa: BLE001  queue.Empty: still sending
                pass
            else:
                worker.join()
                running.remove(worker)
                drain_until = time.monotonic() + args.drain_seconds
                wanted = sum(1 for m in parts["markers"] if m[3])
                acknowledged = earlier + parts["accepted_all"]
                say(f"load done: {len(parts['markers'])} markers sent ({wanted} accepted); "
                    f"waiting until the snapshot reflects them and the follow has ingested "
                    f"all {acknowledged:,} acknowledged events (at most {args.drain_seconds:g} s)")  # fmt: skip
        else:
            time.sleep(args.poll)
        reading = poller.read()
        if reading is not None:
            polls.append((time.monotonic(), time.time(), reading[0] - first["baseline_markers"],
                          reading[1]))  # fmt: skip
        follow.show(since)
        if follow.process.poll() is not None:
            raise SystemExit(f"meterbook follow stopped (exit {follow.process.returncode})")
        if time.monotonic() - last_note >= 30 and polls:
            last_note = time.monotonic()
            say(f"+{last_note - since:.0f} s: the snapshot reflects {polls[-1][2]} markers")
        if parts is not None:
            # the last cycle ends after its publish: stopping the follow as soon as the
            # markers show would interrupt it (and leave its line unprinted)
            ingested = first["lines"] + sum(c["lines"] for c in follow.cycles(since))
            caught_up = bool(polls) and polls[-1][2] >= wanted and ingested >= acknowledged
            if caught_up or time.monotonic() >= drain_until:
                break
    server_cpu, follow_cpu = server.cpu_seconds() - server_cpu, follow.cpu_seconds() - follow_cpu
    wall = time.monotonic() - since
    code = follow.stop()
    running.remove(follow)
    follow.show(since)
    say(f"follow stopped by SIGTERM: exit {code}")
    requests = request_figures(parts, args.e2e_rate, args.e2e_seconds)
    lags = marker_lags(parts["markers"], polls)
    cycles = follow.cycles(since)
    add_run_stats(home, cycles)
    ingested = first["lines"] + sum(c["lines"] for c in cycles)
    return {
        "initial_ingest": first,
        "requests": requests,
        "markers": lags,
        "cycles": cycles,
        "cycle_wall_s": summary([c.get("wall_s") for c in cycles]),
        "cycle_lag_seconds": summary([c["lag_seconds"] for c in cycles]),
        "events_ingested_by_follow": sum(c["lines"] for c in cycles),
        "events_ingested_total": ingested,
        "server_cpu_pct": 100 * server_cpu / wall,
        "follow_cpu_pct": 100 * follow_cpu / wall,
        "wall_s": wall,
    }


def marker_lags(markers: list[list], polls: list[tuple]) -> dict:
    """Each accepted marker's lag by the count (exact to a poll) and by the watermark."""
    accepted = [m for m in markers if m[3]]
    by_count, by_watermark, missing = [], [], 0
    p = 0
    for n, (_, due, wall, _) in enumerate(accepted):
        while p < len(polls) and polls[p][2] < n + 1:
            p += 1
        if p == len(polls):
            missing += 1
            continue
        by_count.append(polls[p][0] - due)
        seen = next((q for q in polls if q[3] is not None and q[3] >= wall), None)
        if seen is not None:
            by_watermark.append(seen[1] - wall)
    by_count.sort()
    by_watermark.sort()
    return {
        "sent": len(markers),
        "accepted": len(accepted),
        "reflected": len(by_count),
        "not_reflected": missing,
        "p50_s": _seconds(by_count, 0.50),
        "p99_s": _seconds(by_count, 0.99),
        "max_s": by_count[-1] if by_count else None,
        "watermark_p50_s": _seconds(by_watermark, 0.50),
        "watermark_p99_s": _seconds(by_watermark, 0.99),
        "watermark_max_s": by_watermark[-1] if by_watermark else None,
    }


def _seconds(ordered: list[float], q: float) -> float | None:
    value = percentile(ordered, q)
    return None if value is None else value / 1000


def summary(values: list) -> dict:
    ordered = sorted(v for v in values if v is not None)
    if not ordered:
        return {"n": 0}
    return {"n": len(ordered), "min": ordered[0], "p50": _seconds(ordered, 0.5),
            "max": ordered[-1]}  # fmt: skip


def add_run_stats(home: Path, cycles: list[dict]) -> None:
    """Each cycle's wall time and its three slowest steps, from the workspace's Dagster runs."""
    if not cycles:
        return
    os.environ["DAGSTER_HOME"] = str(home / "dagster")
    try:
        from dagster import DagsterInstance  # noqa: PLC0415

        with DagsterInstance.get() as instance:
            for cycle in cycles:
                stats = instance.get_run_stats(cycle["run_id"])
                if stats.start_time and stats.end_time:
                    cycle["wall_s"] = round(stats.end_time - stats.start_time, 2)
                steps = instance.get_run_step_stats(cycle["run_id"])
                timed = [(s.end_time - s.start_time, s.step_key) for s in steps if s.end_time]
                cycle["slowest_steps"] = {k: round(t, 1) for t, k in sorted(timed)[::-1][:3]}
    except Exception as exc:  # noqa: BLE001  the figures so far matter more
        say(f"the Dagster runs' stats could not be read: {type(exc).__name__}: {exc}")
    finally:
        os.environ.pop("DAGSTER_HOME", None)


def print_phase2(e2e: dict, args) -> None:
    r, m = e2e["requests"], e2e["markers"]
    print(f"\nend to end, {args.e2e_rate:,.0f} events/s for {args.e2e_seconds:g} s, "
          f"{args.customers:,} customers:")  # fmt: skip
    print(f"  events: {r['events_sent']:,} sent, {r['events_accepted']:,} accepted "
          f"({r['achieved_events_per_s']:,.0f}/s), {r['refused_events']:,} refused, "
          f"{r['errors']:,} failed requests {r['error_statuses'] or ''}")  # fmt: skip
    print(f"  request latency under the ingest: p50 {_ms(r['p50_ms']).strip()} ms, "
          f"p99 {_ms(r['p99_ms']).strip()} ms, max {_ms(r['max_ms']).strip()} ms "
          f"({r['requests']:,} requests)")  # fmt: skip

    def s(v):
        return "-" if v is None else f"{v:.1f}"

    print(f"  lag POST -> snapshot (markers' count): p50 {s(m['p50_s'])} s, "
          f"p99 {s(m['p99_s'])} s, max {s(m['max_s'])} s  "
          f"({m['reflected']}/{m['accepted']} markers reflected)")  # fmt: skip
    print(f"  lag by the watermark (second precision, an upper bound): p50 "
          f"{s(m['watermark_p50_s'])} s, p99 {s(m['watermark_p99_s'])} s, "
          f"max {s(m['watermark_max_s'])} s")  # fmt: skip
    first = e2e["initial_ingest"]
    print(f"  initial ingest: {first['lines']:,} lines in {first['seconds']:.1f} s")
    runs, lags = e2e["cycle_wall_s"], e2e["cycle_lag_seconds"]
    print(f"  follow cycles: {len(e2e['cycles'])}; Dagster run p50 {s(runs.get('p50'))} s, "
          f"max {s(runs.get('max'))} s; lag_seconds p50 {s(lags.get('p50'))} s, "
          f"max {s(lags.get('max'))} s")  # fmt: skip
    for c in e2e["cycles"]:
        steps = ", ".join(f"{k} {v:g}" for k, v in c.get("slowest_steps", {}).items())
        print(f"    +{c['ended_at_s']:>6.1f} s (after {s(c['after_s']):>5} s): {c['files']:>3} "
              f"file(s) {c['lines']:>9,} lines, run {s(c.get('wall_s')):>5} s, "
              f"lag_seconds {c['lag_seconds']:>6.1f}, watermark {c['usage_watermark']}  "
              f"[{steps}]")  # fmt: skip
    accepted_total = e2e["events_accepted_total"]
    print(f"  ingested: {e2e['events_ingested_total']:,} lines (initial + follow) for "
          f"{accepted_total:,} events acknowledged in both phases"
          + ("" if e2e["events_ingested_total"] == accepted_total else "  <- MISMATCH"))  # fmt: skip
    print(f"  CPU: server {e2e['server_cpu_pct']:.0f}%, follow (with dbt) "
          f"{e2e['follow_cpu_pct']:.0f}% over {e2e['wall_s']:.0f} s")  # fmt: skip


# -- main ------------------------------------------------------------------------------------


def machine(work: Path) -> dict:
    model = next((line.split(":", 1)[1].strip() for line in
                  Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())  # fmt: skip
    mounts = [line.split() for line in Path("/proc/mounts").read_text().splitlines()]
    resolved = str(work.resolve())
    fs = max((m for m in mounts if resolved.startswith(m[1])), key=lambda m: len(m[1]))
    return {
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg": os.getloadavg(),
        "workspace_fs": f"{fs[2]} on {fs[1]}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--rates", default="1000,2000,5000,10000", help="events/s; '' skips")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured, per rate")
    parser.add_argument("--warmup", type=float, default=1.0, help="per rate, not counted")
    parser.add_argument("--batch", type=int, default=100, help="events per request")
    parser.add_argument("--connections", type=int, default=16, help="keep-alive connections")
    parser.add_argument("--e2e-rate", type=float, default=2000.0, help="events/s; 0 skips")
    parser.add_argument("--e2e-seconds", type=float, default=600.0)
    parser.add_argument("--follow-interval", type=float, default=None,
                        help="seconds (default: the catalog's follow_seconds, 30)")  # fmt: skip
    parser.add_argument("--rotate-seconds", type=float, default=None,
                        help="settings.events_api.rotate_seconds (default 5)")  # fmt: skip
    parser.add_argument("--marker-every", type=float, default=0.5, help="seconds")
    parser.add_argument("--poll", type=float, default=0.2, help="seconds between usage reads")
    parser.add_argument("--drain-seconds", type=float, default=300.0,
                        help="after the load, the longest wait for the last markers")  # fmt: skip
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument("--workdir", type=Path, default=None, help="where the temp dir goes")
    parser.add_argument("--keep", action="store_true", help="keep the workspace")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",") if r.strip()]
    for name in UNSET:
        os.environ.pop(name, None)
    signal.signal(signal.SIGTERM, _interrupt)
    work = Path(tempfile.mkdtemp(prefix="bench-events-api-", dir=args.workdir))
    running: list = []  # what to stop on the way out: generator processes, the follow
    try:
        run(args, rates, work / "home", running)
    except KeyboardInterrupt:
        say("interrupted")
    finally:
        for thing in running:
            if isinstance(thing, Follow):
                say(f"meterbook follow stopped: exit {thing.stop()}")
            elif thing.is_alive():
                thing.terminate()
                thing.join(5)
        if args.keep:
            say(f"workspace kept: {work / 'home'}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def run(args, rates: list[float], home: Path, running: list) -> None:
    facts = machine(home.parent)
    say(f"machine: {facts['cpus']} cores ({facts['cpus_usable']} usable), {facts['cpu_model']}, "
        f"Python {facts['python']}, load average {facts['loadavg'][0]:.2f}, workspace on "
        f"{facts['workspace_fs']}")  # fmt: skip
    made = time.perf_counter()
    key = make_workspace(home, args.customers, args.rotate_seconds)
    say(f"workspace {home}: catalog of {args.customers:,} customers (+ {MARKER}) "
        f"in {time.perf_counter() - made:.1f} s")  # fmt: skip
    started = time.perf_counter()
    server = Server(home)
    say(f"server {server.url} (pid {server.process.pid}) listening after "
        f"{time.perf_counter() - started:.1f} s")  # fmt: skip
    rows, e2e = [], None
    try:
        if rates:
            print(f"\nrequest latency: batches of {args.batch} events, {args.seconds:g} s per "
                  "rate, open loop (latency from the due time)", flush=True)  # fmt: skip
            print(HEADER, flush=True)
            for n, rate in enumerate(rates):
                rows.append(phase1(server, args, key, rate, n, running))
                print_row(rows[-1])
        if args.e2e_rate:
            earlier = sum(r["events_accepted_with_warmup"] for r in rows)
            e2e = phase2(server, args, key, home, running, earlier)
            e2e["events_accepted_total"] = earlier + e2e["requests"]["events_accepted_with_warmup"]
            print_phase2(e2e, args)
    finally:
        code = server.stop()
        say(f"server stopped by SIGTERM: exit {code}")
    facts["loadavg_end"] = os.getloadavg()
    arguments = vars(args) | {"workdir": str(args.workdir)}
    print(json.dumps({"arguments": arguments, "machine": facts, "rates": rows, "e2e": e2e}))


if __name__ == "__main__":
    main()
