"""The HTTP API of `meterbook serve` (SPEC 9), built by `create_app`.

Each group of routes is a router built from what it reads (`customers.router(store)`); a new
group is one more module and one more `include_router` line here. The app never opens the
warehouse: it answers from the published snapshot, which the store reloads when it changes,
and writes the events it is sent as landing files, which the ingest reads (events.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from orchestration.billing.entitlements.publish import snapshot_path
from orchestration.serve import customers, events, health
from orchestration.serve.errors import install_error_handlers
from orchestration.serve.intake import Intake
from orchestration.serve.snapshot import SnapshotStore


def create_app(home: Path, poll_seconds: float = 0.2) -> FastAPI:
    store = SnapshotStore(snapshot_path(home), poll_seconds)
    intake = Intake(home)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # before the server listens: a published snapshot is served from the first request,
        # and a landing file a killed server left open is completed before any new one
        store.start()
        intake.start()
        try:
            yield
        finally:
            intake.stop()  # after the last answer: the open landing file is renamed
            store.stop()

    app = FastAPI(
        title="meterbook",
        summary="Entitlements and the month so far, and events in (SPEC 9)",
        lifespan=lifespan,
        # the GET routes are plain Starlette routes (customers.py), which OpenAPI does not
        # describe: SPEC 9 is their description, and no half-empty schema is served
        openapi_url=None,
    )
    app.state.snapshots, app.state.intake = store, intake
    install_error_handlers(app)
    app.include_router(health.router(store))
    app.include_router(customers.router(store))
    app.include_router(events.router(intake, store))
    return app
