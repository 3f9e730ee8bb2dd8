"""Fixtures of the alert and webhook tests: an outbox file, a live receiver, a dead port."""

from __future__ import annotations

import socket

import pytest
from alert_receiver import Receiver

from orchestration.billing.alerts import Outbox, outbox_path


@pytest.fixture
def outbox(tmp_path) -> Outbox:
    return Outbox(outbox_path(tmp_path))


@pytest.fixture
def receiver():
    live = Receiver()
    yield live
    live.stop()


@pytest.fixture
def sleeps() -> list[float]:
    """Pass `sleep=sleeps.append`: backoffs are recorded, not waited."""
    return []


@pytest.fixture
def refused_url() -> str:
    """A loopback port nothing listens on: connections are refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/hooks/meterbook"
