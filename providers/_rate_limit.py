"""A platform's invocation quota kept client-side: a rate and a cap on calls in flight.

DigitalOcean refuses a namespace's invocations past 600 a minute or 120 at once with 429s.
Every thread (or greenlet) of a worker process shares one :class:`InvocationLimiter` per
namespace (:func:`shared_limiter`), so together they stay under the quota instead of finding
it by being refused. Other processes and hosts are not counted: the platform's 429 remains
the last word, and is mapped to a retryable error as usual.

Calls are spaced evenly: each reserves the next start slot, ``1 / rate`` after the previous
one, and waits for it outside the lock, so waiting threads never hold each other up. A burst
of N calls therefore takes about ``(N - 1) / rate`` seconds. Time comes from an injectable
:class:`~providers._poll.Clock`, so tests measure the spacing without waiting.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Hashable, Iterator

from providers._poll import SYSTEM_CLOCK, Clock
from providers.errors import Throttled

__all__ = ["InvocationLimiter", "shared_limiter"]


class InvocationLimiter:
    """At most ``rate_per_s`` call starts a second and ``max_in_flight`` calls at once.

    Parameters
    ----------
    rate_per_s:
        Sustained starts per second; calls are spaced ``1 / rate_per_s`` apart.
    max_in_flight:
        Calls inside :meth:`slot` at once.
    provider:
        ``provider_name`` put on the errors raised.
    clock:
        Where time is read and waited (tests pass their own).

    Raises
    ------
    ValueError
        A limit is not positive.
    """

    def __init__(
        self,
        rate_per_s: float,
        max_in_flight: int,
        *,
        provider: str,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if not rate_per_s > 0 or max_in_flight < 1:
            raise ValueError("rate_per_s and max_in_flight must be positive")
        self.rate_per_s = rate_per_s
        self.max_in_flight = max_in_flight
        self._provider = provider
        self._clock = clock
        self._interval_s = 1.0 / rate_per_s
        self._lock = threading.Lock()
        self._next_start_s: float | None = None
        self._in_flight = threading.BoundedSemaphore(max_in_flight)

    def __repr__(self) -> str:
        return (
            f"InvocationLimiter(rate_per_s={self.rate_per_s}, max_in_flight={self.max_in_flight})"
        )

    @contextlib.contextmanager
    def slot(self, timeout_s: float) -> Iterator[None]:
        """Hold one of the in-flight places, started no sooner than the rate allows.

        Raises
        ------
        Throttled
            No in-flight place came free within ``timeout_s``, or the next start slot is
            further away than that; nothing was sent, and the error is retryable.
        """
        if not self._in_flight.acquire(timeout=max(timeout_s, 0.0)):
            raise Throttled(
                f"{self.max_in_flight} invocations already in flight for {timeout_s:.1f} s "
                "(client-side concurrency cap)",
                provider=self._provider,
            )
        try:
            self._wait_for_start(timeout_s)
            yield
        finally:
            self._in_flight.release()

    def _wait_for_start(self, timeout_s: float) -> None:
        with self._lock:
            now = self._clock.monotonic()
            start = now if self._next_start_s is None else max(now, self._next_start_s)
            wait_s = start - now
            if wait_s > timeout_s:
                raise Throttled(
                    f"the next start under {self.rate_per_s:g} invocations/s is {wait_s:.1f} s "
                    "away (client-side rate limit)",
                    provider=self._provider,
                    retry_after_s=wait_s,
                )
            self._next_start_s = start + self._interval_s
        if wait_s > 0:
            self._clock.sleep(wait_s)


_shared: dict[Hashable, InvocationLimiter] = {}
_shared_lock = threading.Lock()


def shared_limiter(
    key: Hashable, rate_per_s: float, max_in_flight: int, *, provider: str
) -> InvocationLimiter:
    """The process's one limiter for ``key`` (a namespace), made on first use.

    Every executor of the process asking for the same key and limits shares it; asking with
    other limits gets a limiter of its own, so a test's small limits never leak into another.
    """
    full_key = (key, rate_per_s, max_in_flight, provider)
    with _shared_lock:
        limiter = _shared.get(full_key)
        if limiter is None:
            limiter = _shared[full_key] = InvocationLimiter(
                rate_per_s, max_in_flight, provider=provider
            )
        return limiter
