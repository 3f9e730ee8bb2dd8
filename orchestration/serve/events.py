"""`POST /v1/events` and `GET /v1/status` (SPEC 9).

A batch is answered 202 with one result per event, in order: `accepted` (on disk, fsynced,
before this answer) or `refused` with the reason (envelope checks only, `ingest.envelope`).
The whole batch is refused with 401/403 (key), 413 (over `max_batch_bytes` or
`max_batch_events`), 429 with `Retry-After` (the backlog the ingest has not read is over
`max_backlog_bytes`) or 400 (a JSON array that does not parse, an unreadable body).
"""

from __future__ import annotations

import math

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from orchestration.ingest.envelope import Accepted, BatchError, check_event, split_batch
from orchestration.ingest.refresh_status import read_json, refresh_status_path
from orchestration.serve.errors import ApiError
from orchestration.serve.intake import Intake
from orchestration.serve.loading import dumps
from orchestration.serve.snapshot import SnapshotStore

JSON = "application/json"


def router(intake: Intake, store: SnapshotStore) -> APIRouter:
    async def post_events(request: Request) -> Response:
        ring = intake.ring  # one catalog's keys and settings throughout the request
        key = ring.authenticate(request.headers.get("authorization"))
        settings = ring.settings
        body = await _body(request, settings.max_batch_bytes)
        _check_backlog(intake, settings)
        try:
            texts = split_batch(body)
        except BatchError as exc:
            raise ApiError(400, "malformed_batch", str(exc)) from None
        if len(texts) > settings.max_batch_events:
            message = f"{len(texts)} events: a batch holds at most {settings.max_batch_events}"
            raise ApiError(413, "batch_too_large", message)
        allowed = frozenset(key.customers) if key.customers is not None else None
        results = [
            check_event(i, t, settings.max_event_bytes, allowed) for i, t in enumerate(texts)
        ]
        accepted = [r for r in results if isinstance(r, Accepted)]
        if accepted:
            try:
                await run_in_threadpool(intake.writer.append, [a.line for a in accepted])
            except OSError as exc:
                # a failed write is cut back; a failed fsync may leave the batch in the file:
                # either way a retry is safe, as the ingest bills a repeated event_id once
                message = (
                    f"the events could not be stored durably ({exc.strerror}); none is "
                    "acknowledged: send the batch again"
                )
                raise ApiError(503, "write_failed", message) from None
        answer = {
            "accepted": len(accepted),
            "refused": len(results) - len(accepted),
            "events": [_answer(r) for r in results],
        }
        return Response(dumps(answer), 202, media_type=JSON)

    async def status(request: Request) -> Response:
        snapshot = store.current
        settings = intake.ring.settings
        document = {
            "usage_watermark": snapshot.as_of if snapshot else None,
            "snapshot_published_at": snapshot.published_at if snapshot else None,
            "last_refresh": read_json(refresh_status_path(intake.home)),
            "last_ingest": intake.last_ingest,
            "events_api": {
                "unrotated_bytes": intake.writer.unrotated_bytes(),
                "backlog_bytes": intake.backlog_bytes(),
                "max_backlog_bytes": settings.max_backlog_bytes,
            },
        }
        return Response(dumps(document), media_type=JSON)

    routes = APIRouter()
    routes.add_route("/v1/events", post_events, methods=["POST"])
    routes.add_route("/v1/status", status, methods=["GET"])
    return routes


def _answer(result) -> dict:
    if isinstance(result, Accepted):
        return {"index": result.index, "status": "accepted", "event_id": result.event_id}
    return result.answer()


async def _body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:  # no Content-Length (chunked), or a false one: stop reading
                raise _too_large(limit)
            chunks.append(chunk)
    except ClientDisconnect:
        raise ApiError(400, "incomplete_body", "the client went away mid-body") from None
    return b"".join(chunks)


def _check_backlog(intake: Intake, settings) -> None:
    backlog = intake.backlog_bytes()
    if backlog >= settings.max_backlog_bytes:
        retry = str(math.ceil(settings.follow_seconds))  # the next micro-batch may catch up
        message = (
            f"{backlog} bytes of events wait for the ingest (bound {settings.max_backlog_bytes}); "
            f"retry after {retry} s"
        )
        raise ApiError(429, "backlog_full", message, {"Retry-After": retry})


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "batch_too_large", f"the batch is over {limit} bytes")
