"""The FastAPI application: the contract's six routes over the store and the runtimes.

Handlers stay thin: they validate, look the deployment up in memory, delegate, and shape
the reply. Every refusal is an `ApiError` turned into a body by `_errors`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive

from ._auth import BearerKeyMiddleware
from ._errors import (
    CLIENT_CLOSED_REQUEST,
    ApiError,
    ErrorCode,
    install_error_handlers,
    json_response,
)
from ._invoke import run_invocation
from ._limits import DEFAULT_LIMITS, ServerLimits
from ._models import parse_config_header, parse_invoke_request, validate_function_id
from ._package import BOOTSTRAP_NAME, declared_length, extract_package, receive_upload
from ._pool import FunctionRuntime
from ._runtime import SpawnError
from ._store import Deployment, DeploymentStore, already_deployed, remove_tree, rfc3339

__all__ = ["create_app"]

_log = logging.getLogger(__name__)

_STATS_FLUSH_INTERVAL_S = 1.0
_MAX_WARM_PARAMETER = 1000
_UPLOAD_NAME = "package.zip"
_CODE_NAME = "code"


def create_app(
    data_dir: Path, *, api_key: str | None = None, limits: ServerLimits = DEFAULT_LIMITS
) -> FastAPI:
    """Build the reference server for the Custom FaaS HTTP contract v1.

    Parameters
    ----------
    data_dir:
        Where deployments live; created when missing. The server writes and deletes nothing
        outside it. Deployments found there are served again (restart persistence).
    api_key:
        When set, every request must carry `Authorization: Bearer <api_key>` or gets 401.
    limits:
        Package, payload, queue and warm-pool limits.

    Returns
    -------
    FastAPI
        The app; run it with any ASGI server (see `serve`).
    """
    server = _Server(DeploymentStore(data_dir), limits)
    app = FastAPI(
        title="blueprint-faas reference server",
        lifespan=server.lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    install_error_handlers(app)
    # An ASGI server calls this when its shutdown starts, before it waits for running
    # requests (`serve` does): invocations may run for minutes and would hold it up.
    app.state.begin_shutdown = server.begin_shutdown
    base = "/api/functions/{function_id}"
    app.add_api_route(base, server.deploy, methods=["PUT"])
    app.add_api_route(f"{base}/invoke", server.invoke, methods=["POST"])
    app.add_api_route(f"{base}/health", server.health, methods=["GET"])
    app.add_api_route(base, server.describe, methods=["GET"])
    app.add_api_route(base, server.delete, methods=["DELETE"])
    app.add_api_route(f"{base}/warm", server.warm, methods=["POST"])
    if api_key:
        app.add_middleware(BearerKeyMiddleware, api_key=api_key)
    return app


class _Server:
    """Route handlers and the state they share (store, runtimes, deploy locks)."""

    def __init__(self, store: DeploymentStore, limits: ServerLimits) -> None:
        self._store = store
        self._limits = limits
        self._runtimes: dict[str, FunctionRuntime] = {}
        self._in_flight: set[asyncio.Task[Response]] = set()
        self._shutting_down = False
        # One lock per id being deployed: a second deploy of the id waits, then sees 409.
        # Weak values drop locks nobody holds, so ids never accumulate.
        self._deploy_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    @asynccontextmanager
    async def lifespan(self, _app: FastAPI) -> AsyncIterator[None]:
        """Flush counters periodically while serving; kill every instance on shutdown."""
        flusher = asyncio.create_task(self._flush_stats_forever())
        try:
            yield
        finally:
            self.begin_shutdown()
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
            self._store.flush_stats()
            for runtime in self._runtimes.values():
                runtime.close()
                runtime.kill_running()

    def begin_shutdown(self) -> None:
        """Refuse new invocations and abort the queued and running ones (503, retryable)."""
        self._shutting_down = True
        for work in self._in_flight:
            work.cancel()

    async def deploy(self, function_id: str, request: Request) -> Response:
        """PUT /api/functions/{id}: stream, check and extract the zip, then publish it."""
        validate_function_id(function_id)
        config = parse_config_header(request.headers.get("x-blueprint-config"))
        self._refuse_existing(function_id)
        lock = self._deploy_locks.setdefault(function_id, asyncio.Lock())
        async with lock:
            self._refuse_existing(function_id)
            staging = self._store.new_staging_dir()
            try:
                upload = staging / _UPLOAD_NAME
                size_bytes = await receive_upload(
                    request.stream(),
                    upload,
                    content_length=request.headers.get("content-length"),
                    max_bytes=self._limits.max_upload_bytes,
                )
                started = time.perf_counter()
                await asyncio.to_thread(
                    extract_package,
                    upload,
                    staging / _CODE_NAME,
                    max_uncompressed_bytes=self._limits.max_uncompressed_bytes,
                    max_entries=self._limits.max_entries,
                )
                upload.unlink()
                deployment = self._store.commit(
                    staging,
                    function_id,
                    config,
                    binary_size_bytes=size_bytes,
                    cold_start_ms=round((time.perf_counter() - started) * 1000),
                )
            except Exception:
                await asyncio.to_thread(remove_tree, staging)
                raise
            except BaseException:
                remove_tree(staging)
                raise
        return json_response(_record(deployment, request))

    async def invoke(self, function_id: str, request: Request) -> Response:
        """POST /api/functions/{id}/invoke: run the bootstrap once with the request."""
        self._deployment(function_id)  # An unknown id is 404 before its body is read.
        body = await _read_capped(request, self._limits.max_invoke_bytes)
        invoke_request = parse_invoke_request(body)
        if self._shutting_down:
            raise _shutting_down()
        # Looked up again: the function may have been deleted (or redeployed) while the
        # body arrived. Nothing awaits between this lookup and taking its runtime.
        deployment = self._deployment(function_id)
        work = asyncio.ensure_future(
            run_invocation(deployment, self._runtime(deployment), invoke_request)
        )
        client_gone = asyncio.ensure_future(_client_gone(request.receive))
        self._in_flight.add(work)
        try:
            await asyncio.wait((work, client_gone), return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._in_flight.discard(work)
            client_gone.cancel()
            # Cancelling leaves the queue, or kills the bootstrap's process group, instead
            # of running on for nobody until the function's timeout.
            work.cancel()
        if work.done() and not work.cancelled():
            return work.result()
        if self._shutting_down:
            raise _shutting_down()
        return Response(status_code=CLIENT_CLOSED_REQUEST)

    async def health(self, function_id: str) -> Response:
        """GET /api/functions/{id}/health: 200 when the bootstrap can run, else 503."""
        deployment = self._deployment(function_id)
        bootstrap = deployment.code_dir / BOOTSTRAP_NAME
        if not (bootstrap.is_file() and os.access(bootstrap, os.X_OK)):
            raise ApiError(
                ErrorCode.FUNCTION_UNHEALTHY,
                f"function {function_id!r} cannot run: bootstrap is missing or not executable",
                details={"function_id": function_id, "reason": "bootstrap"},
            )
        last = deployment.last_invocation_s
        return json_response(
            {
                "function_id": function_id,
                "status": "healthy",
                "last_invocation": None if last is None else rfc3339(last),
                "total_invocations": deployment.total_invocations,
            }
        )

    async def describe(self, function_id: str, request: Request) -> Response:
        """GET /api/functions/{id}: the deployment record with deployed_at and size."""
        deployment = self._deployment(function_id)
        record = _record(deployment, request)
        record["deployed_at"] = rfc3339(deployment.deployed_at_s)
        record["binary_size_bytes"] = deployment.binary_size_bytes
        return json_response(record)

    async def delete(self, function_id: str) -> Response:
        """DELETE /api/functions/{id}: kill warm instances, remove only the id's folder."""
        self._deployment(function_id)
        runtime = self._runtimes.pop(function_id, None)
        if runtime is not None:
            runtime.close()
        trashed = self._store.detach(function_id)
        if trashed is not None:
            await asyncio.to_thread(remove_tree, trashed)
        return json_response({"function_id": function_id, "status": "deleted"})

    async def warm(self, function_id: str, request: Request) -> Response:
        """POST /api/functions/{id}/warm[?instances=N]: pre-start N instances (default 1)."""
        deployment = self._deployment(function_id)
        instances = _instances_parameter(request.query_params.get("instances"))
        try:
            warmed = self._runtime(deployment).warm(instances)
        except SpawnError as exc:
            raise ApiError(
                ErrorCode.FUNCTION_UNHEALTHY,
                f"function {function_id!r} cannot start: {exc}",
                details={"function_id": function_id, "reason": "spawn"},
            ) from exc
        return json_response(
            {"function_id": function_id, "status": "warm", "instances_warmed": warmed}
        )

    def _deployment(self, function_id: str) -> Deployment:
        validate_function_id(function_id)
        deployment = self._store.get(function_id)
        if deployment is None:
            raise ApiError(
                ErrorCode.FUNCTION_NOT_FOUND,
                f"function {function_id!r} is not deployed",
                function_id=function_id,
            )
        return deployment

    def _runtime(self, deployment: Deployment) -> FunctionRuntime:
        runtime = self._runtimes.get(deployment.function_id)
        if runtime is not None and runtime.deployment is deployment:
            return runtime
        # A runtime left from an earlier deployment of this id would run it with the old
        # env vars, timeout and limits.
        if runtime is not None:
            runtime.close()
        runtime = FunctionRuntime(deployment, self._limits)
        self._runtimes[deployment.function_id] = runtime
        return runtime

    def _refuse_existing(self, function_id: str) -> None:
        if self._store.get(function_id) is not None:
            raise already_deployed(function_id)

    async def _flush_stats_forever(self) -> None:
        while True:
            await asyncio.sleep(_STATS_FLUSH_INTERVAL_S)
            try:
                self._store.flush_stats()
            except OSError as exc:
                _log.warning("cannot persist invocation counters: %s", exc)


def _record(deployment: Deployment, request: Request) -> dict[str, Any]:
    # The endpoint is built from the URL this request came in on, so it is right behind
    # any host name, port or root path the client used.
    base = str(request.base_url).rstrip("/")
    config = deployment.config
    return {
        "function_id": deployment.function_id,
        "endpoint": f"{base}/api/functions/{deployment.function_id}/invoke",
        "status": "deployed",
        "cold_start_ms": deployment.cold_start_ms,
        "memory_mb": config.memory_mb,
        "timeout_secs": config.timeout_secs,
        "max_concurrency": config.max_concurrency,
    }


async def _read_capped(request: Request, max_bytes: int) -> bytes:
    declared = declared_length(request.headers.get("content-length"))
    if declared is not None and declared > max_bytes:
        raise _payload_too_large(max_bytes)
    chunks: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > max_bytes:
            raise _payload_too_large(max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)


async def _client_gone(receive: Receive) -> None:
    # Once the body is read, the ASGI server's next message is the disconnect.
    while (await receive())["type"] != "http.disconnect":
        pass


def _shutting_down() -> ApiError:
    return ApiError(
        ErrorCode.SHUTTING_DOWN,
        "the server is shutting down; the invocation was stopped",
        retry_after_s=1,
    )


def _payload_too_large(max_bytes: int) -> ApiError:
    return ApiError(
        ErrorCode.PAYLOAD_TOO_LARGE,
        f"invoke body exceeds the limit of {max_bytes} bytes",
        details={"limit_bytes": max_bytes},
    )


def _instances_parameter(raw: str | None) -> int:
    if raw is None:
        return 1
    if not (raw.isascii() and raw.isdecimal()) or int(raw) > _MAX_WARM_PARAMETER:
        raise ApiError(
            ErrorCode.INVALID_PARAMETER,
            f"instances must be an integer from 0 to {_MAX_WARM_PARAMETER}",
            details={"parameter": "instances"},
        )
    return int(raw)
