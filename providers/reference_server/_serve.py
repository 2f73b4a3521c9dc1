"""Run the reference server under uvicorn, tuned for one box."""

from __future__ import annotations

import importlib.util
import resource
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import uvicorn

from ._app import create_app
from ._limits import DEFAULT_LIMITS, ServerLimits

if TYPE_CHECKING:
    import socket

__all__ = ["serve"]

# Each running invocation holds four descriptors (three pipes and a pidfd), so a few
# hundred concurrent invocations pass a default soft limit of 1024.
_WANTED_OPEN_FILES = 65_536


def serve(
    host: str,
    port: int,
    data_dir: Path,
    *,
    api_key: str | None = None,
    limits: ServerLimits = DEFAULT_LIMITS,
    log_level: str = "warning",
) -> None:
    """Serve the contract on `host:port` until interrupted (blocking).

    Uses uvloop and httptools when installed. Access logs are off: they would cost the hot
    invoke path more than the invocation of a small bootstrap. The API key is never logged.
    """
    _raise_open_files_limit()
    app = create_app(data_dir, api_key=api_key, limits=limits)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop" if _installed("uvloop") else "asyncio",
        http="httptools" if _installed("httptools") else "h11",
        log_level=log_level,
        access_log=False,
        backlog=2048,
        server_header=False,
    )
    _Server(config, app.state.begin_shutdown).run()


class _Server(uvicorn.Server):
    """uvicorn's server, aborting the app's invocations as soon as shutdown starts.

    uvicorn lets running requests finish before it shuts the app down, and an invocation
    may run for up to the function's timeout (900 s at most): SIGTERM would hang that long.
    """

    def __init__(self, config: uvicorn.Config, begin_shutdown: Callable[[], None]) -> None:
        super().__init__(config)
        self._begin_shutdown = begin_shutdown

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._begin_shutdown()
        await super().shutdown(sockets)


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _raise_open_files_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = _WANTED_OPEN_FILES if hard == resource.RLIM_INFINITY else min(hard, _WANTED_OPEN_FILES)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
