"""Optional bearer API key, checked before any route runs (unknown routes included).

A pure ASGI middleware rather than a FastAPI dependency: it costs one header scan per request
on the hot invoke path and cannot be forgotten on a new route.
"""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from ._errors import ApiError, ErrorCode, error_response

__all__ = ["BearerKeyMiddleware"]


class BearerKeyMiddleware:
    """Answer 401 to every HTTP request without `Authorization: Bearer <api_key>`."""

    def __init__(self, app: ASGIApp, *, api_key: str) -> None:
        self._app = app
        self._expected = f"Bearer {api_key}".encode()

    def __repr__(self) -> str:
        return "BearerKeyMiddleware(api_key=<redacted>)"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        presented = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                presented = value
                break
        # compare_digest: the time taken must not reveal how much of the key matched.
        if hmac.compare_digest(presented, self._expected):
            await self._app(scope, receive, send)
            return
        response = error_response(
            ApiError(
                ErrorCode.UNAUTHORIZED,
                "missing or invalid bearer API key",
                details={"scheme": "Bearer"},
            )
        )
        await response(scope, receive, send)
