"""Local job handlers, keyed by job id: the jobs a worker runs itself.

A handler takes the call's argument bytes and returns the result bytes. One that wants the
call's metadata (to log a block number, say) takes a second parameter, a :class:`JobContext`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from dispatcher.errors import InvalidJobCall, UnknownJob
from dispatcher.jobs import checked_job_id

__all__ = ["Handler", "JobContext", "Router"]

#: A local job handler: ``(args) -> bytes`` or ``(args, ctx) -> bytes``.
Handler = Callable[..., bytes]
_H = TypeVar("_H", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class JobContext:
    """What a handler may know about the call it serves, besides its argument bytes."""

    job_id: int
    call_id: str
    metadata: Mapping[str, Any]
    attempt: int = 1


@dataclass(frozen=True, slots=True)
class _Route:
    handler: Handler
    wants_context: bool

    def __call__(self, args: bytes, ctx: JobContext) -> bytes:
        return self.handler(args, ctx) if self.wants_context else self.handler(args)


class Router:
    """The local handlers of a blueprint.

    Example::

        router = Router()

        @router.job(0)
        def square(args: bytes) -> bytes:
            n = int.from_bytes(args, "big")
            return (n * n).to_bytes(16, "big")
    """

    def __init__(self) -> None:
        self._routes: dict[int, _Route] = {}

    def job(self, job_id: int) -> Callable[[_H], _H]:
        """Decorator registering the function as the handler of ``job_id``.

        Raises
        ------
        InvalidJobCall
            ``job_id`` is not a job id, or already has a handler.
        """

        def register(handler: _H) -> _H:
            self.add(job_id, handler)
            return handler

        return register

    def add(self, job_id: int, handler: Handler) -> None:
        """Register ``handler`` for ``job_id``.

        Raises
        ------
        InvalidJobCall
            ``job_id`` is not a job id, already has a handler, or ``handler`` takes neither
            one nor two positional parameters.
        """
        checked_job_id(job_id)
        if job_id in self._routes:
            raise InvalidJobCall(f"job {job_id} already has a handler")
        self._routes[job_id] = _Route(handler, _wants_context(handler))

    def call(self, job_id: int, args: bytes, ctx: JobContext) -> bytes:
        """Run the handler of ``job_id``.

        Raises
        ------
        UnknownJob
            No handler is registered for ``job_id``.
        TypeError
            The handler returned something other than bytes.
        Exception
            Whatever the handler raises, unchanged.
        """
        try:
            route = self._routes[job_id]
        except KeyError:
            raise UnknownJob(job_id) from None
        body = route(args, ctx)
        if not isinstance(body, bytes | bytearray | memoryview):
            raise TypeError(f"handler of job {job_id} returned {type(body).__name__}, not bytes")
        return bytes(body)

    def job_ids(self) -> list[int]:
        """The job ids with a local handler, sorted."""
        return sorted(self._routes)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._routes

    def __len__(self) -> int:
        return len(self._routes)


def _wants_context(handler: Callable[..., Any]) -> bool:
    try:
        parameters = inspect.signature(handler).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [
        p
        for p in parameters
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    if any(p.kind is p.VAR_POSITIONAL for p in parameters):
        return True
    if len(positional) not in (1, 2):
        raise InvalidJobCall(
            f"a handler takes (args) or (args, ctx), {handler!r} takes {len(positional)}"
        )
    return len(positional) == 2
