"""The client-side invocation limiter: calls spaced by the rate, and a cap on calls in flight."""

from __future__ import annotations

import itertools
import threading

import pytest

from providers._rate_limit import InvocationLimiter, shared_limiter
from providers.digitalocean import NAMESPACE_MAX_IN_FLIGHT
from providers.errors import Throttled
from tests.processes import wait_until


class FakeClock:
    """Time that moves only when the limiter sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_a_burst_of_20_at_10_per_second_takes_about_two_seconds() -> None:
    clock = FakeClock()
    limiter = InvocationLimiter(10, 120, provider="test", clock=clock)
    starts = []

    for _ in range(20):
        with limiter.slot(60):
            starts.append(clock.now)

    assert clock.now - 1000.0 == pytest.approx(1.9)
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert gaps == pytest.approx([0.1] * 19)


def test_a_call_after_a_quiet_spell_starts_at_once() -> None:
    clock = FakeClock()
    limiter = InvocationLimiter(10, 120, provider="test", clock=clock)
    with limiter.slot(60):
        pass
    clock.now += 5

    with limiter.slot(60):
        pass

    assert clock.slept == []


def test_a_start_further_away_than_the_timeout_is_throttled_with_the_wait() -> None:
    clock = FakeClock()
    limiter = InvocationLimiter(1, 120, provider="test", clock=clock)
    with limiter.slot(60):
        pass

    with pytest.raises(Throttled) as caught, limiter.slot(0.5):
        pass

    assert caught.value.retry_after_s == pytest.approx(1.0)
    assert caught.value.provider == "test"


def test_never_more_than_the_namespace_cap_are_in_flight() -> None:
    limiter = InvocationLimiter(1e9, NAMESPACE_MAX_IN_FLIGHT, provider="test")
    release = threading.Event()
    lock = threading.Lock()
    in_flight = [0]
    peak = [0]

    def call() -> None:
        with limiter.slot(60):
            with lock:
                in_flight[0] += 1
                peak[0] = max(peak[0], in_flight[0])
            release.wait(60)
            with lock:
                in_flight[0] -= 1

    threads = [threading.Thread(target=call) for _ in range(NAMESPACE_MAX_IN_FLIGHT + 10)]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: in_flight[0] == NAMESPACE_MAX_IN_FLIGHT, 60, "the cap to fill")
        with pytest.raises(Throttled, match="120 invocations already in flight"), limiter.slot(0):
            pass
    finally:
        release.set()
        for thread in threads:
            thread.join(60)

    assert peak[0] == NAMESPACE_MAX_IN_FLIGHT
    assert in_flight[0] == 0


def test_one_limiter_is_shared_per_namespace_and_limits() -> None:
    first = shared_limiter(("https://host", "fn-1"), 10, 120, provider="test")

    assert shared_limiter(("https://host", "fn-1"), 10, 120, provider="test") is first
    assert shared_limiter(("https://host", "fn-2"), 10, 120, provider="test") is not first
    assert shared_limiter(("https://host", "fn-1"), 5, 120, provider="test") is not first


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        InvocationLimiter(0, 1, provider="test")
