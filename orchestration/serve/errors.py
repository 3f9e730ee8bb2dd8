"""Every error the API answers is JSON, `{"error": {"code", "message"}}`, with a stable code:
the routes' own (unknown customer or feature, no snapshot yet) and the framework's (no such
path, a method the path does not take, a server error), never an HTML page."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from orchestration.serve.loading import dumps

_CODES = {404: "not_found", 405: "method_not_allowed"}


class ApiError(Exception):
    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers


def unknown_customer(customer_id: str) -> ApiError:
    return ApiError(404, "unknown_customer", f"no customer '{customer_id}'")


def unknown_feature(feature: str, customer_id: str | None = None) -> ApiError:
    """Not a feature of the catalog; or, with `customer_id`, one the snapshot holds no answer
    for that customer (SPEC 9 has the publisher write every feature, a denied one too)."""
    where = f" for customer '{customer_id}'" if customer_id is not None else ""
    return ApiError(404, "unknown_feature", f"no feature '{feature}'{where}")


def no_snapshot() -> ApiError:
    return ApiError(503, "no_snapshot", "no snapshot has been published yet")


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    body = dumps({"error": {"code": code, "message": message}})
    return Response(body, status, headers, media_type="application/json")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(Exception, _server_error)


async def _api_error(request: Request, exc: ApiError) -> Response:
    return error_response(exc.status, exc.code, exc.message, exc.headers)


async def _http_error(request: Request, exc: HTTPException) -> Response:
    code = _CODES.get(exc.status_code, f"http_{exc.status_code}")
    return error_response(exc.status_code, code, str(exc.detail), exc.headers)


async def _invalid_request(request: Request, exc: RequestValidationError) -> Response:
    return error_response(422, "invalid_request", str(exc.errors()))


async def _server_error(request: Request, exc: Exception) -> Response:
    # Starlette's ServerErrorMiddleware sends this, then re-raises: uvicorn logs the traceback
    # and closes the connection, which a client would otherwise reuse and find reset
    headers = {"connection": "close"}
    return error_response(500, "internal_error", "the server could not answer", headers)
