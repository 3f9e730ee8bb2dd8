"""Every billing scenario of ../shared/scenarios, through the real commands (README.md there):
a new workspace, `meterbook close --period P`, then `meterbook invoices --period P --json`,
compared with the expected invoices. Never special-cased: a folder is a folder.

A close costs 25-40 s and keeps about one core busy, so the selected scenarios run side by
side, one per core, as soon as the first of their tests starts; each test then asserts on
what its own scenario recorded. Each close is also recorded for the Spark tier, which
compares a Spark close of the scenario with it rather than closing it on DuckDB again
(tests/duckdb_closes.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from compare import compare
from duckdb_closes import outcome_of, record, shared_root

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = REPO.parent / "shared" / "scenarios"
# SPEC 7-11 samples: the ones of a capability that exists (wallets) run like the others
WAVE2 = REPO.parent / "shared" / "scenarios-wave2"
WAVE2_BUILT = ("wallet_",)
# our own hand-checked cases, in the same format
OWN = Path(__file__).resolve().parent / "cases"
NOW = "2026-11-20T00:00:00Z"
SIDE_BY_SIDE = max(2, os.cpu_count() or 2)


def scenario_dirs() -> list[Path]:
    if not SCENARIOS.is_dir():
        return []
    return sorted(p for p in SCENARIOS.iterdir() if (p / "scenario.yaml").is_file())


def wave2_dirs() -> list[Path]:
    if not WAVE2.is_dir():
        return []
    return sorted(
        p
        for p in WAVE2.iterdir()
        if (p / "scenario.yaml").is_file() and p.name.startswith(WAVE2_BUILT)
    )


def own_dirs() -> list[Path]:
    return sorted(p for p in OWN.iterdir() if (p / "scenario.yaml").is_file())


def meterbook_command() -> list[str]:
    beside = Path(sys.executable).parent / "meterbook"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("meterbook")
    return [found] if found else [sys.executable, "-m", "orchestration.cli"]


def months_of(folder: Path) -> list[tuple[str, Path]]:
    spec = yaml.safe_load((folder / "scenario.yaml").read_text())
    if "periods" in spec:
        return [(str(p), folder / f"expected_{p}.json") for p in spec["periods"]]
    return [(str(spec["period"]), folder / "expected.json")]


def run(args: list[str], home: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, METERBOOK_HOME=str(home), METERBOOK_NOW=NOW)
    env.pop("DAGSTER_HOME", None)  # the workspace's own instance
    return subprocess.run(
        [*meterbook_command(), *args, "--home", str(home)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def json_document(stdout: str) -> dict:
    """The JSON document; lines of progress text before it are tolerated."""
    lines = stdout.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("{")), None)
    assert start is not None, f"no JSON document in the output:\n{stdout[-2000:]}"
    return json.loads("\n".join(lines[start:]))


def test_scenarios_are_present():
    if not scenario_dirs():
        pytest.skip(f"no scenarios at {SCENARIOS} (the shared folder beside the repository)")
    assert all(months_of(folder) for folder in scenario_dirs())


def close_and_compare(folder: Path, home: Path) -> tuple[dict[str, str], list[str]]:
    """Close every period of the scenario in a new workspace: the invoices as `meterbook
    invoices --json` printed them per period, and their differences from what the scenario
    expects (an AssertionError when a command fails)."""
    shutil.copytree(folder / "catalog", home / "catalog")
    events = folder / "events"
    if events.is_dir():
        shutil.copytree(events, home / "landing" / "events")
    shown_by_period, differences = {}, []
    for period, expected_file in months_of(folder):
        closed = run(["close", "--period", period], home)
        assert closed.returncode == 0, f"close {period} failed:\n{closed.stderr[-3000:]}"
        shown = run(["invoices", "--period", period, "--json"], home)
        assert shown.returncode == 0, f"invoices {period} failed:\n{shown.stderr[-3000:]}"
        shown_by_period[period] = shown.stdout
        expected = json.loads(expected_file.read_text())
        differences += [f"{period}: {d}" for d in compare(json_document(shown.stdout), expected)]
    return shown_by_period, differences


def close_and_record(folder: Path, home: Path, root: Path) -> list[str]:
    """close_and_compare's differences; the close (or its failure) recorded for the Spark
    tier, which compares a Spark close with it (tests/duckdb_closes.py)."""
    try:
        shown_by_period, differences = close_and_compare(folder, home)
    except BaseException as failure:
        record(root, folder.name, error=str(failure)[-3000:] or repr(failure))
        raise
    record(root, folder.name, outcome_of(home, shown_by_period))
    return differences


@pytest.fixture(scope="session")
def scenario_outcomes(request, tmp_path_factory) -> Iterator[dict[str, Future]]:
    """The selected scenarios, closed side by side; leaving waits for every one of them."""
    selected = {
        item.callspec.params["folder"]
        for item in request.session.items
        if getattr(item, "originalname", None) in _SCENARIO_TESTS
    }
    if any(getattr(i, "originalname", None) == _WALLETS_CLI for i in request.session.items):
        selected |= {f for f in wave2_dirs() if f.name == "wallet_basic"}
    root, recorded = tmp_path_factory.mktemp("scenarios"), shared_root(tmp_path_factory)
    with ThreadPoolExecutor(max_workers=SIDE_BY_SIDE) as pool:
        outcomes = {}
        # the shared scenarios first: the Spark tier, on the other worker, waits for them
        for folder in sorted(selected, key=lambda f: (f.parent != SCENARIOS, f)):
            HOMES[folder.name] = home = root / folder.name / "home"
            outcomes[folder.name] = pool.submit(close_and_record, folder, home, recorded)
        yield outcomes


@pytest.mark.slow
@pytest.mark.parametrize("folder", scenario_dirs(), ids=lambda p: p.name)
def test_scenario(folder: Path, scenario_outcomes):
    differences = scenario_outcomes[folder.name].result()
    assert not differences, "\n".join(differences)


def test_wave2_scenarios_are_present():
    if not wave2_dirs():
        pytest.skip(f"no wallet_* scenarios at {WAVE2} (the shared folder beside the repository)")
    for folder in wave2_dirs():  # each built capability's samples have what the runner reads
        assert (folder / "catalog").is_dir(), folder
        assert all(expected.is_file() for _, expected in months_of(folder)), folder


@pytest.mark.slow
@pytest.mark.parametrize("folder", wave2_dirs(), ids=lambda p: f"wave2-{p.name}")
def test_wave2_scenario(folder: Path, scenario_outcomes):
    differences = scenario_outcomes[folder.name].result()
    assert not differences, "\n".join(differences)


@pytest.mark.slow
@pytest.mark.parametrize("folder", own_dirs(), ids=lambda p: f"own-{p.name}")
def test_own_scenario(folder: Path, scenario_outcomes):
    differences = scenario_outcomes[folder.name].result()
    assert not differences, "\n".join(differences)


@pytest.mark.slow
def test_wallets_after_the_wallet_basic_close(scenario_outcomes):
    # `meterbook wallets` on the workspace the scenario closed (no close of its own)
    if "wallet_basic" not in scenario_outcomes:
        pytest.skip(f"no wallet_basic scenario at {WAVE2} (the shared folder beside the repo)")
    scenario_outcomes["wallet_basic"].result()
    home = HOMES["wallet_basic"]
    shown = run(["wallets", "--json"], home)
    assert shown.returncode == 0, shown.stderr[-3000:]
    (delta,) = json.loads(shown.stdout)["customers"]
    assert delta["customer_id"] == "delta"
    assert delta["balances"] == {"promotional": "0.00", "paid": "32.00"}
    (drawn,) = delta["invoices"]
    assert (drawn["promotional"], drawn["paid"], drawn["provisional"]) == ("15.00", "18.00", True)
    assert {g["id"]: g["status"] for g in delta["grants"]} == {
        "g_delta_promo": "used",
        "g_delta_pack": "active",
    }
    refused = run(["wallets", "--customer", "nobody"], home)
    assert refused.returncode == 1
    assert refused.stderr.splitlines() == ["meterbook wallets: no customer 'nobody' in the catalog"]


_SCENARIO_TESTS = ("test_scenario", "test_wave2_scenario", "test_own_scenario")
_WALLETS_CLI = "test_wallets_after_the_wallet_basic_close"
HOMES: dict[str, Path] = {}  # scenario folder name -> the workspace it was closed in
