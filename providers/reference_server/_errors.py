"""The one place where every rejection becomes a contract status code and error body.

Other modules raise `ApiError(ErrorCode.X, message, ...)`; the status code for each code lives
only in `_STATUS_BY_CODE`, and `error_response` builds the contract body
`{"error", "code", "details"}` (plus `function_id` for 404 and 409).
"""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Any

from pydantic_core import to_json
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

__all__ = [
    "CLIENT_CLOSED_REQUEST",
    "ApiError",
    "ErrorCode",
    "error_response",
    "install_error_handlers",
    "json_response",
]

_log = logging.getLogger(__name__)

# nginx's "client closed request", answered to a client that is gone (so never seen).
CLIENT_CLOSED_REQUEST = 499


class ErrorCode(StrEnum):
    """Machine codes of the error bodies this server sends."""

    INVALID_FUNCTION_ID = "INVALID_FUNCTION_ID"
    INVALID_CONFIG = "INVALID_CONFIG"
    INVALID_INVOKE_REQUEST = "INVALID_INVOKE_REQUEST"
    INVALID_PARAMETER = "INVALID_PARAMETER"
    INVALID_PACKAGE = "INVALID_PACKAGE"
    UNSAFE_PACKAGE_ENTRY = "UNSAFE_PACKAGE_ENTRY"
    MISSING_BOOTSTRAP = "MISSING_BOOTSTRAP"
    UNAUTHORIZED = "UNAUTHORIZED"
    FUNCTION_NOT_FOUND = "FUNCTION_NOT_FOUND"
    ROUTE_NOT_FOUND = "ROUTE_NOT_FOUND"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    FUNCTION_EXISTS = "FUNCTION_EXISTS"
    PACKAGE_TOO_LARGE = "PACKAGE_TOO_LARGE"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    THROTTLED = "THROTTLED"
    INTERNAL_ERROR = "INTERNAL_ERROR"
    FUNCTION_UNHEALTHY = "FUNCTION_UNHEALTHY"
    SHUTTING_DOWN = "SHUTTING_DOWN"


_STATUS_BY_CODE: dict[ErrorCode, int] = {
    ErrorCode.INVALID_FUNCTION_ID: 400,
    ErrorCode.INVALID_CONFIG: 400,
    ErrorCode.INVALID_INVOKE_REQUEST: 400,
    ErrorCode.INVALID_PARAMETER: 400,
    ErrorCode.INVALID_PACKAGE: 400,
    ErrorCode.UNSAFE_PACKAGE_ENTRY: 400,
    ErrorCode.MISSING_BOOTSTRAP: 400,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.FUNCTION_NOT_FOUND: 404,
    ErrorCode.ROUTE_NOT_FOUND: 404,
    ErrorCode.METHOD_NOT_ALLOWED: 405,
    ErrorCode.FUNCTION_EXISTS: 409,
    ErrorCode.PACKAGE_TOO_LARGE: 413,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.THROTTLED: 429,
    ErrorCode.INTERNAL_ERROR: 500,
    ErrorCode.FUNCTION_UNHEALTHY: 503,
    ErrorCode.SHUTTING_DOWN: 503,
}


class ApiError(Exception):
    """A request the server refuses, carrying everything the error body needs.

    Parameters
    ----------
    code:
        The machine code; it alone decides the HTTP status.
    message:
        A human message. Never put secrets or request bodies in it.
    details:
        Structured facts for the client (limits, offending field, reason).
    function_id:
        The id the request named; echoed at the top level of 404 and 409 bodies.
    retry_after_s:
        Sent as `Retry-After` when set (throttling).
    """

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        function_id: str | None = None,
        retry_after_s: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details if details is not None else {}
        self.function_id = function_id
        self.retry_after_s = retry_after_s

    @property
    def status(self) -> int:
        """The HTTP status this rejection is answered with."""
        return _STATUS_BY_CODE[self.code]


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """Serialise `body` once into a JSON response.

    pydantic-core's Rust encoder is used because invoke results can be megabytes of integers,
    where `json.dumps` (and FastAPI's encoder walk) would cost the event loop hundreds of ms.
    """
    return Response(
        to_json(body),
        status_code=status,
        headers=headers,
        media_type="application/json",
    )


def error_response(err: ApiError) -> Response:
    """Build the contract error body and headers for `err`."""
    body: dict[str, Any] = {"error": err.message, "code": err.code.value, "details": err.details}
    if err.function_id is not None and err.status in (404, 409):
        body["function_id"] = err.function_id
    headers: dict[str, str] = {}
    if err.retry_after_s is not None:
        headers["Retry-After"] = str(err.retry_after_s)
    if err.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return json_response(body, err.status, headers)


async def _on_api_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc)


async def _on_http_exception(_request: Request, exc: Exception) -> Response:
    # Unknown routes and wrong methods must answer with the contract body too, not
    # Starlette's {"detail": ...}.
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        return error_response(ApiError(ErrorCode.ROUTE_NOT_FOUND, "no such route"))
    if exc.status_code == 405:
        return error_response(ApiError(ErrorCode.METHOD_NOT_ALLOWED, "method not allowed"))
    body = {"error": str(exc.detail), "code": "HTTP_ERROR", "details": {}}
    return json_response(body, exc.status_code)


async def _on_client_disconnect(_request: Request, _exc: Exception) -> Response:
    # The client left while its body was being read: nobody will read this reply, and
    # it is not a server error worth a traceback in the log.
    return Response(status_code=CLIENT_CLOSED_REQUEST)


async def _on_unexpected(_request: Request, exc: Exception) -> Response:
    # A bug or an environment failure (disk full, fd exhaustion): log it with its traceback
    # for the operator, give the client only the contract body.
    _log.error("unexpected error while serving a request", exc_info=exc)
    return error_response(ApiError(ErrorCode.INTERNAL_ERROR, "internal server error"))


def install_error_handlers(app: Any) -> None:
    """Register the handlers that turn exceptions into contract error bodies on `app`."""
    app.add_exception_handler(ApiError, _on_api_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)
    app.add_exception_handler(ClientDisconnect, _on_client_disconnect)
    app.add_exception_handler(Exception, _on_unexpected)
