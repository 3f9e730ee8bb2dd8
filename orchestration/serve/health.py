"""`GET /healthz`: 200 with the snapshot's as_of, published_at and customer count once one is
loaded, 503 `{"status": "no_snapshot"}` before."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from orchestration.serve.loading import dumps
from orchestration.serve.snapshot import SnapshotStore

NO_SNAPSHOT = dumps({"status": "no_snapshot"})


def router(store: SnapshotStore) -> APIRouter:
    async def healthz(request: Request) -> Response:
        snapshot = store.current
        if snapshot is None:
            return Response(NO_SNAPSHOT, 503, media_type="application/json")
        return Response(snapshot.health, media_type="application/json")

    routes = APIRouter()
    routes.add_route("/healthz", healthz, methods=["GET"])  # a plain route, as customers.py's
    return routes
