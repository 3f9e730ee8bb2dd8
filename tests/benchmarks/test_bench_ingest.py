"""The ingest benchmark runs each phase in a process of its own: a phase that dies must end
the benchmark with its exit code, not leave it waiting for figures that never come."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from bench_ingest import run_phase  # noqa: E402


def test_a_phase_that_dies_ends_the_benchmark_saying_so():
    ended: list[BaseException] = []

    def phase() -> None:
        with pytest.raises(SystemExit) as exc:
            run_phase(_die, 3)
        ended.append(exc.value)

    waiting = threading.Thread(target=phase, daemon=True)  # a hang fails the test, not CI
    waiting.start()
    waiting.join(timeout=60)
    assert not waiting.is_alive(), "the benchmark still waits for a dead phase's figures"
    (exc,) = ended
    assert "exit code 3" in str(exc) and "without its figures" in str(exc)


def test_a_phase_that_puts_its_figures_returns_them():
    assert run_phase(_put_figures, {"rows": 1}) == {"rows": 1}


def _die(code, out):
    os._exit(code)  # at once: no figures, no clean-up, as an out-of-memory kill would


def _put_figures(figures, out):
    out.put(figures)
