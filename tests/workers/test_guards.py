"""The worker's guards around a FaaS call, on a real Redis and a real HTTP function."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from dispatcher import Settings
from dispatcher.breaker import BreakerPolicy, BreakerState, CircuitBreaker, read_breaker
from dispatcher.budget import read_budget
from providers.custom import LIMITS, HttpFaasExecutor
from providers.errors import FaasError
from tests.switchable_function import SwitchableFunction, switchable_function
from tests.workers.conftest import FAST_KNOBS, wait_until
from workers.guards import CircuitOpen, NoCapacity, ProviderGuards


@pytest.fixture
def function() -> Iterator[SwitchableFunction]:
    with switchable_function() as served:
        yield served


def _guards(redis_url: str, **knobs: float) -> ProviderGuards:
    settings = Settings.from_redis_url(redis_url, **{**FAST_KNOBS, "breaker_failures": 1, **knobs})
    return ProviderGuards.for_settings(settings)


def test_after_a_failure_the_next_call_asks_the_breaker_again(
    redis_url: str, function: SwitchableFunction
) -> None:
    guards, executor = _guards(redis_url), HttpFaasExecutor(function.url)
    assert guards.invoke(executor, 1, b"\x01").body == b"\x01"  # seen closed: cached
    function.failing = True
    with pytest.raises(FaasError):
        guards.invoke(executor, 1, b"\x01")
    with pytest.raises(CircuitOpen):
        guards.invoke(executor, 1, b"\x01")
    assert function.requests == 2


def test_a_breaker_another_host_opened_is_honoured(
    redis_url: str, function: SwitchableFunction
) -> None:
    guards, executor = _guards(redis_url), HttpFaasExecutor(function.url)
    guards.invoke(executor, 1, b"\x01")
    other = CircuitBreaker(redis.Redis.from_url(redis_url), executor.scope, BreakerPolicy(1))
    other.record(other.admit(), failed=True)

    def refused() -> bool:
        try:
            guards.invoke(executor, 1, b"\x01")
        except CircuitOpen:
            return True
        return False

    assert wait_until(refused, 10, "the open breaker to be seen")
    assert read_breaker(redis.Redis.from_url(redis_url), executor.scope).is_open


def test_a_throttle_shrinks_the_budget_and_a_spent_budget_sends_nothing(
    redis_url: str, function: SwitchableFunction
) -> None:
    guards = _guards(redis_url, budget_wait_s=0.0)
    executor = HttpFaasExecutor(
        function.url, limits=LIMITS.model_copy(update={"max_account_concurrency": 4})
    )
    function.capacity = 0  # every call is answered 429
    with pytest.raises(FaasError):
        guards.invoke(executor, 1, b"\x01")
    client = redis.Redis.from_url(redis_url)
    assert read_budget(client, executor.scope, 4).limit == 2
    assert read_breaker(client, executor.scope).state is BreakerState.CLOSED  # not an outage
    for _ in range(2):  # the budget's two leases, held by calls elsewhere
        assert guards._budget(executor).acquire(0, 30)  # type: ignore[union-attr]
    with pytest.raises(NoCapacity):
        guards.invoke(executor, 1, b"\x01")
    assert function.requests == 1
