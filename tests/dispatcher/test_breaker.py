"""The shared circuit breaker, on a real Redis: its transitions, and that nothing wedges it."""

from __future__ import annotations

import redis

from dispatcher.breaker import BreakerPolicy, BreakerState, CircuitBreaker, read_breaker
from dispatcher.keys import breaker_key
from tests.processes import wait_until

SCOPE = "custom:http://faas.test"
POLICY = BreakerPolicy(
    failures=3, failure_rate=0.5, window_s=30, min_calls=10, cooldown_s=0.3, probes=2
)


def _client(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url, decode_responses=True)


def _fail(breaker: CircuitBreaker, times: int) -> BreakerState:
    state = BreakerState.CLOSED
    for _ in range(times):
        state = breaker.record(breaker.admit(), failed=True)
    return state


def test_a_breaker_opens_after_the_configured_consecutive_failures(redis_url: str) -> None:
    breaker = CircuitBreaker(_client(redis_url), SCOPE, POLICY)
    assert _fail(breaker, 2) is BreakerState.CLOSED
    assert breaker.admit().allowed
    assert _fail(breaker, 1) is BreakerState.OPEN
    refused = breaker.admit()
    assert not refused.allowed
    assert refused.state is BreakerState.OPEN
    assert 0 < refused.retry_after_s <= POLICY.cooldown_s


def test_a_success_resets_the_consecutive_failures(redis_url: str) -> None:
    breaker = CircuitBreaker(_client(redis_url), SCOPE, POLICY)
    _fail(breaker, 2)
    breaker.record(breaker.admit(), failed=False)
    assert _fail(breaker, 2) is BreakerState.CLOSED
    assert read_breaker(_client(redis_url), SCOPE).consecutive_failures == 2


def test_a_failure_rate_over_the_window_opens_the_breaker(redis_url: str) -> None:
    breaker = CircuitBreaker(_client(redis_url), SCOPE, POLICY)
    states = []
    for index in range(10):  # fail, ok, fail, ok...: never 3 in a row, half of them failed
        states.append(breaker.record(breaker.admit(), failed=index % 2 == 0))
    assert states[:-1] == [BreakerState.CLOSED] * 9
    # The 10th call is a success, so the rate is checked at the next failure.
    assert _fail(breaker, 1) is BreakerState.OPEN


def test_after_the_cool_down_a_bounded_number_of_probes_close_it(redis_url: str) -> None:
    client = _client(redis_url)
    breaker = CircuitBreaker(client, SCOPE, POLICY)
    _fail(breaker, 3)
    first = wait_until(lambda: (lambda a: a if a.allowed else None)(breaker.admit()), 5, "probe")
    assert first.probe and first.state is BreakerState.HALF_OPEN
    second = breaker.admit()
    assert second.probe
    third = breaker.admit()
    assert not third.allowed and third.state is BreakerState.HALF_OPEN
    assert breaker.record(first, failed=False) is BreakerState.HALF_OPEN
    assert breaker.record(second, failed=False) is BreakerState.CLOSED
    assert client.exists(breaker_key(SCOPE)) == 0
    assert breaker.admit().allowed


def test_a_failed_probe_opens_it_again(redis_url: str) -> None:
    breaker = CircuitBreaker(_client(redis_url), SCOPE, POLICY)
    _fail(breaker, 3)
    probe = wait_until(lambda: (lambda a: a if a.allowed else None)(breaker.admit()), 5, "probe")
    assert breaker.record(probe, failed=True) is BreakerState.OPEN
    assert not breaker.admit().allowed


def test_an_outcome_of_a_call_sent_before_it_opened_does_not_count_as_a_probe(
    redis_url: str,
) -> None:
    breaker = CircuitBreaker(_client(redis_url), SCOPE, POLICY)
    early = breaker.admit()
    _fail(breaker, 3)
    assert breaker.record(early, failed=False) is BreakerState.OPEN


def test_probes_that_never_report_stop_holding_their_places(redis_url: str) -> None:
    policy = BreakerPolicy(failures=1, cooldown_s=0.1, probes=1, probe_timeout_s=0.3)
    breaker = CircuitBreaker(_client(redis_url), SCOPE, policy)
    _fail(breaker, 1)
    wait_until(lambda: breaker.admit().allowed, 5, "the first probe")  # its worker dies
    assert not breaker.admit().allowed
    replacement = wait_until(
        lambda: (lambda a: a if a.allowed else None)(breaker.admit()), 5, "a new probe"
    )
    assert replacement.probe


def test_every_state_of_the_breaker_expires(redis_url: str) -> None:
    client = _client(redis_url)
    breaker = CircuitBreaker(client, SCOPE, POLICY)
    _fail(breaker, 1)
    assert client.pttl(breaker_key(SCOPE)) > 0
    _fail(breaker, 2)
    assert read_breaker(client, SCOPE).state is BreakerState.OPEN
    assert client.pttl(breaker_key(SCOPE)) > 0


def test_two_clients_see_one_breaker(redis_url: str) -> None:
    one = CircuitBreaker(_client(redis_url), SCOPE, POLICY)
    other = CircuitBreaker(_client(redis_url), SCOPE, POLICY)
    _fail(one, 3)
    assert not other.admit().allowed
    view = read_breaker(_client(redis_url), SCOPE)
    assert view.is_open and 0 < view.cooldown_left_s <= POLICY.cooldown_s
