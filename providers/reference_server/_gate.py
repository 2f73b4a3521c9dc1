"""A per-function concurrency gate: N running, a bounded FIFO queue, then refusal.

`max_concurrency` invocations run at once; up to `max_queued` more wait in arrival order for
a slot; beyond that the caller is refused (429 with Retry-After), which is the backpressure
the contract asks for without rejecting ordinary bursts.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

from ._errors import ApiError, ErrorCode

__all__ = ["ConcurrencyGate"]

_RETRY_AFTER_S = 1


class ConcurrencyGate:
    """Admit at most `max_running` holders; queue up to `max_queued` more."""

    def __init__(self, function_id: str, max_running: int, max_queued: int) -> None:
        self._function_id = function_id
        self._max_running = max_running
        self._max_queued = max_queued
        self._running = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def running(self) -> int:
        """Invocations holding a slot now."""
        return self._running

    async def acquire(self) -> None:
        """Take one slot, waiting in the queue for it when all are busy.

        The holder must call `release` exactly once. A slot outlives the request that took
        it (it is freed when the bootstrap's process exits), so it cannot be scoped by an
        `async with`; callers hand `release` over with `contextlib.ExitStack.pop_all`.

        Raises
        ------
        ApiError
            THROTTLED (429, Retry-After) when every slot is busy and the queue is full.
        asyncio.CancelledError
            When cancelled while queued; the place in the queue is given up.
        """
        if self._running < self._max_running and not self._waiters:
            self._running += 1
            return
        if len(self._waiters) >= self._max_queued:
            raise ApiError(
                ErrorCode.THROTTLED,
                f"function {self._function_id!r} is at its concurrency limit",
                details={
                    "max_concurrency": self._max_running,
                    "max_queued": self._max_queued,
                },
                retry_after_s=_RETRY_AFTER_S,
            )
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            # The releasing holder hands its slot over directly (running stays counted).
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # The slot arrived just as we were cancelled: pass it on.
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        """Give a slot back: to the first waiter in the queue, else to the free count."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._running -= 1
