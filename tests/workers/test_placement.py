"""Placement with real processes: overflow under a burst, fallback and fail-fast behind the
shared breaker, one budget across worker processes, and leases of a killed worker expiring.

The provider is a :class:`~tests.switchable_function.SwitchableFunction` in this process,
switched to fail (502) or to throttle (429 past its capacity), which counts the requests it
received and the most it had in flight.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any, cast

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from dispatcher import JobCall, JobResult, Settings
from dispatcher._celery_client import CeleryClient
from dispatcher.breaker import BreakerState, read_breaker
from dispatcher.budget import ConcurrencyBudget
from dispatcher.keys import budget_key
from dispatcher.placement import PlacementReason
from providers.errors import ErrorKind
from tests.switchable_function import SwitchableFunction, switchable_function
from tests.workers import placement_app
from tests.workers.conftest import FAST_KNOBS, Run, StartWorker, free_port, wait_until
from tests.workers.placement_app import BUDGET, BUDGETED, FAAS_ONLY, FALLBACK, OVERFLOW

APP = "tests.workers.placement_app"
#: Longer than any test runs: a cool-down that ended mid-test would let a probe through.
COOLDOWN_S = 300.0
LEASE_MARGIN_S = 1.0


@pytest.fixture(scope="module")
def _served_function() -> Iterator[SwitchableFunction]:
    with switchable_function() as function:
        yield function


@pytest.fixture
def function(_served_function: SwitchableFunction) -> SwitchableFunction:
    _served_function.reset()
    return _served_function


@pytest.fixture
def placed(redis_url: str, function: SwitchableFunction, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The placement app as the runner sees it, and the settings its workers get."""
    monkeypatch.setenv(placement_app.SWITCH_URL_ENV, function.url)
    settings = Settings.from_redis_url(
        redis_url,
        **{
            **FAST_KNOBS,
            "overflow_backlog_high": 3,
            "overflow_backlog_low": 1,
            "overflow_sample_s": 0.02,
            "breaker_failures": 3,
            "breaker_cooldown_s": COOLDOWN_S,
            "budget_lease_margin_s": LEASE_MARGIN_S,
        },
    )
    return placement_app.build_app().with_settings(settings)


def _start(start_worker: StartWorker, placed: Any, url: str, **options: Any) -> Any:
    env = {placement_app.SWITCH_URL_ENV: url}
    options.setdefault("worker_settings", placed.settings)
    return start_worker(app=APP, extra_env=env, **options)


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _ms(value: int) -> bytes:
    return value.to_bytes(4, "big")


def _where(results: list[JobResult]) -> Counter[tuple[str, str]]:
    return Counter((result.ran_on, str(result.placement_reason)) for result in results)


def test_a_burst_overflows_to_faas_and_calls_come_back_local_once_it_drains(
    start_worker: StartWorker, placed: Any, function: SwitchableFunction
) -> None:
    function.delay_s = 0.05
    _start(start_worker, placed, function.url, lane="local", concurrency=1)
    _start(start_worker, placed, function.url, lane="faas", concurrency=8)
    burst = [JobCall(OVERFLOW, _ms(200)) for _ in range(24)]
    after = [JobCall(OVERFLOW, _ms(1)) for _ in range(2)]
    drained = threading.Event()

    def producer() -> Iterator[JobCall]:
        yield from burst
        drained.wait(60)  # the next calls come once the burst is answered
        yield from after

    run = Run(placed, burst + after, max_in_flight=30, producer=producer())
    wait_until(lambda: len(run.results) >= len(burst), 60, "the burst's results")
    drained.set()
    run.finish(60)

    run.assert_each_answered_once_and_ok()
    during = _where([r for r in run.results if r.call_id in {c.call_id for c in burst}])
    assert during[("custom", "overflow")] >= 1
    assert during[("local", "policy")] >= 1
    assert set(during) == {("custom", "overflow"), ("local", "policy")}
    assert function.requests == during[("custom", "overflow")]
    later = [r for r in run.results if r.call_id in {c.call_id for c in after}]
    assert _where(later) == Counter({("local", "policy"): 2})
    burst_ids = {call.call_id for call in burst}
    assert all(result.body == _ms(200) for result in run.results if result.call_id in burst_ids)


def test_an_open_breaker_fails_fast_is_shared_by_workers_and_falls_back_locally(
    start_worker: StartWorker, placed: Any, function: SwitchableFunction, redis_url: str
) -> None:
    scope = placed.registry.get(FAAS_ONLY).scope
    broker = redis.Redis.from_url(redis_url)
    function.failing = True
    first = _start(start_worker, placed, function.url, concurrency=4)
    run = Run(placed, [JobCall(FAAS_ONLY, _ms(1)) for _ in range(3)], max_in_flight=1)
    run.finish(60)
    # Three failures opened it, every later attempt was refused before it was sent.
    assert function.requests == 3
    assert read_breaker(broker, scope).state is BreakerState.OPEN
    for result in run.results:
        assert result.error is not None and result.error.kind is ErrorKind.CIRCUIT_OPEN
        assert result.error.retryable
        assert result.error.retry_after_s is not None
        assert 0 < result.error.retry_after_s <= COOLDOWN_S
    # Another worker process sees the same breaker: nothing more reaches the provider.
    port = free_port()
    exported = placed.settings.model_copy(update={"metrics_port": port})
    _start(start_worker, placed, function.url, concurrency=4, worker_settings=exported)
    first.stop()
    refused = Run(placed, [JobCall(FAAS_ONLY, _ms(1)) for _ in range(3)], max_in_flight=3)
    refused.finish(60)
    assert {r.error.kind for r in refused.results if r.error} == {ErrorKind.CIRCUIT_OPEN}
    # A fallback job runs locally: published to its local lane, or, already queued on the
    # FaaS side, run by the local handler of the worker that took it.
    fallback = Run(placed, [JobCall(FALLBACK, _ms(1)) for _ in range(3)], max_in_flight=3)
    fallback.finish(60)
    fallback.assert_each_answered_once_and_ok()
    assert _where(fallback.results) == Counter({("local", "fallback"): 3})
    queued = JobCall(FALLBACK, _ms(1))
    client = CeleryClient(placed.settings)
    try:
        stored = client.publish(queued).get(timeout=60)
    finally:
        client.close()
    assert JobResult.from_wire(stored).placement_reason is PlacementReason.FALLBACK
    assert function.requests == 3
    samples = _scrape(port)
    assert samples[("blueprint_faas_breaker_state", (("scope", scope),))] == 2
    placed_locally = (("job_id", str(FALLBACK)), ("ran_on", "local"), ("reason", "fallback"))
    assert samples[("blueprint_faas_placements_total", placed_locally)] == 4


def test_after_the_cool_down_a_probe_through_a_worker_closes_the_breaker(
    start_worker: StartWorker, placed: Any, function: SwitchableFunction, redis_url: str
) -> None:
    scope = placed.registry.get(FAAS_ONLY).scope
    broker = redis.Redis.from_url(redis_url)
    short = placed.settings.model_copy(update={"breaker_cooldown_s": 1.0})
    _start(start_worker, placed, function.url, concurrency=4, worker_settings=short)
    function.failing = True
    outage = Run(placed, [JobCall(FAAS_ONLY, _ms(1)) for _ in range(3)], max_in_flight=1)
    outage.finish(60)
    assert ErrorKind.CIRCUIT_OPEN in {r.error.kind for r in outage.results if r.error}
    # The provider is back: once the cool-down is over, one probe closes the breaker.
    function.failing = False
    wait_until(lambda: not read_breaker(broker, scope).is_open, 30, "the cool-down")
    back = Run(placed, [JobCall(FAAS_ONLY, _ms(1)) for _ in range(3)], max_in_flight=1)
    back.finish(60)
    back.assert_each_answered_once_and_ok()
    assert _where(back.results) == Counter({("custom", "policy"): 3})
    assert read_breaker(broker, scope).state is BreakerState.CLOSED


def test_two_worker_processes_never_have_more_than_the_budget_in_flight(
    start_worker: StartWorker, placed: Any, function: SwitchableFunction
) -> None:
    function.delay_s, function.capacity = 0.15, BUDGET
    for _ in range(2):
        _start(start_worker, placed, function.url, concurrency=4)
    run = Run(placed, [JobCall(BUDGETED, _ms(1)) for _ in range(16)], max_in_flight=16)
    run.finish(120)
    run.assert_each_answered_once_and_ok()
    assert function.statuses[429] == 0
    assert function.peak_in_flight == BUDGET
    assert function.requests == 16


def test_leases_of_a_killed_worker_expire_after_the_lease_time(
    start_worker: StartWorker, placed: Any, function: SwitchableFunction, redis_url: str
) -> None:
    function.delay_s = 2.5
    broker = redis.Redis.from_url(redis_url)
    scope = placed.registry.get(BUDGETED).scope
    leases = budget_key(scope, "leases")
    worker = _start(start_worker, placed, function.url, concurrency=4)
    calls = [JobCall(BUDGETED, _ms(1)) for _ in range(4)]
    run = Run(placed, calls, max_in_flight=4)
    wait_until(lambda: broker.zcard(leases) == BUDGET, 30, "the budget to be taken")
    worker.kill()
    seconds, micros = broker.time()
    killed_at_ms = seconds * 1000 + micros // 1000
    lease_ms = (placement_app.FAAS_CONFIG.timeout_secs + LEASE_MARGIN_S) * 1000
    held = cast("list[tuple[bytes, float]]", broker.zrange(leases, 0, -1, withscores=True))
    expiries = [score for _, score in held]
    assert len(expiries) == BUDGET
    assert all(expiry <= killed_at_ms + lease_ms for expiry in expiries)

    def past_every_lease() -> bool:
        now_s, now_us = broker.time()
        return now_s * 1000 + now_us // 1000 > max(expiries)

    wait_until(past_every_lease, 30, "the leases' expiry")
    budget = ConcurrencyBudget(broker, scope, BUDGET, recover_s=60)
    taken = [budget.acquire(0, 30) for _ in range(BUDGET)]
    assert all(taken), "the whole budget is back"
    for lease in taken:
        assert lease is not None
        budget.release(lease)
    # The killed worker's calls are restored and answered by another, each exactly once.
    function.delay_s = 0.0
    _start(start_worker, placed, function.url, concurrency=4)
    run.finish(90)
    run.assert_each_answered_once_and_ok()


def test_calls_sent_back_for_want_of_a_lease_are_not_attempts(
    start_worker: StartWorker, placed: Any, function: SwitchableFunction
) -> None:
    function.delay_s, function.capacity = 0.3, BUDGET
    impatient = placed.settings.model_copy(
        update={"budget_wait_s": 0.0, "budget_requeue_s": 0.05, "retry_max": 0}
    )
    worker = _start(start_worker, placed, function.url, concurrency=6, worker_settings=impatient)
    run = Run(placed, [JobCall(BUDGETED, _ms(1)) for _ in range(6)], max_in_flight=6)
    run.finish(120)
    run.assert_each_answered_once_and_ok()
    assert "back to its queue" in worker.output()  # some waited, with retry_max 0
    assert [result.attempts for result in run.results] == [1] * 6
    assert (function.requests, function.statuses[429]) == (6, 0)
