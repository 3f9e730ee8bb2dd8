"""The read-only HTTP API of `meterbook serve` (SPEC 9), built by `create_app`.

Each group of routes is a router built from what it reads (`customers.router(store)`); a new
group is one more module and one more `include_router` line here. The app never opens the
warehouse: it answers from the published snapshot, which the store reloads when it changes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from orchestration.billing.entitlements.publish import snapshot_path
from orchestration.serve import customers, health
from orchestration.serve.errors import install_error_handlers
from orchestration.serve.snapshot import SnapshotStore


def create_app(home: Path, poll_seconds: float = 0.2) -> FastAPI:
    store = SnapshotStore(snapshot_path(home), poll_seconds)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # before the server listens: a published snapshot is served from the first request
        store.start()
        try:
            yield
        finally:
            store.stop()

    app = FastAPI(
        title="meterbook",
        summary="Entitlements and the month so far, from the published snapshot (SPEC 9)",
        lifespan=lifespan,
        # the GET routes are plain Starlette routes (customers.py), which OpenAPI does not
        # describe: SPEC 9 is their description, and no half-empty schema is served
        openapi_url=None,
    )
    app.state.snapshots = store  # for whatever else needs the store (GET /v1/status)
    install_error_handlers(app)
    app.include_router(health.router(store))
    app.include_router(customers.router(store))
    return app
