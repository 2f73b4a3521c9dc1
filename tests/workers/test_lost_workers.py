"""Workers killed at any instant lose no call, and a dead worker's calls run again in seconds.

Every call taken off a queue is recorded under its consumer in the same atomic step
(``dispatcher._broker``); a consumer whose liveness key lapses has its calls put back by a
live worker (``dispatcher._consumers``). These tests kill real worker processes with SIGKILL,
including at the instants a fault-injection hook picks, and count what comes back.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from dispatcher import Blueprint, JobCall, Settings
from dispatcher.keys import CONSUMERS_KEY, consumer_in_flight_key, job_queue
from tests.workers.conftest import FAST_KNOBS, Run, StartWorker, WorkerProcess, wait_until

pytestmark = pytest.mark.integration

#: The visibility timeout left long: only liveness can bring a call back within the tests.
LIVENESS_KNOBS: dict[str, Any] = {
    **FAST_KNOBS,
    "visibility_timeout_s": 3600,
    "liveness_ttl_s": 1,
    "restore_interval_s": 0.2,
}
#: SIGKILLs of the kill-loop test.
_KILLS = 50
UNACKED = "unacked"
UNACKED_INDEX = "unacked_index"


@pytest.fixture
def broker(redis_url: str) -> redis.Redis:
    """The test's broker db, to look at what the transport recorded."""
    return redis.Redis.from_url(redis_url)


@pytest.fixture
def restoring_settings(blueprint: Blueprint, redis_url: str) -> Settings:
    """Settings that restore a dead worker's calls within about a second; the app uses them."""
    settings = Settings.from_redis_url(redis_url, **LIVENESS_KNOBS)
    blueprint.with_settings(settings)
    return settings


def wait_until_started(counters: redis.Redis, calls: list[JobCall]) -> None:
    wait_until(
        lambda: all(counters.get(f"t:started:{call.call_id}") for call in calls),
        what="every call to start",
    )


def sleep_call(ms: int, **metadata: Any) -> JobCall:
    """A call of job 4, which sleeps ``ms`` and counts its starts in the counters Redis."""
    return JobCall(4, ms.to_bytes(4, "big"), metadata=metadata)


def consumers(broker: redis.Redis) -> set[str]:
    members = broker.smembers(CONSUMERS_KEY)
    return {m.decode() if isinstance(m, bytes) else m for m in members}


def test_a_running_call_is_recorded_under_its_consumer_and_cleared_once_answered(
    blueprint: Blueprint, start_worker: StartWorker, counters: redis.Redis, broker: redis.Redis
) -> None:
    start_worker(jobs="4", concurrency=1)
    call = sleep_call(1500)
    run = Run(blueprint, [call])
    wait_until(lambda: counters.get(f"t:started:{call.call_id}"), what="the call to start")

    (consumer_id,) = consumers(broker)
    in_flight = broker.hgetall(consumer_in_flight_key(consumer_id))
    assert list(in_flight.values()) == [job_queue(4).encode()]
    (tag,) = in_flight
    assert broker.hexists(UNACKED, tag)
    assert broker.zscore(UNACKED_INDEX, tag) is not None

    run.finish(timeout_s=30)
    run.assert_each_answered_once_and_ok()
    # The late ack, which clears the record, follows the stored result: wait for it.
    wait_until(
        lambda: broker.hlen(consumer_in_flight_key(consumer_id)) == 0,
        what="the acknowledged call to leave its consumer's record",
    )
    assert broker.hlen(UNACKED) == 0
    assert broker.zcard(UNACKED_INDEX) == 0


def test_a_worker_killed_right_after_its_pop_loses_nothing(
    blueprint: Blueprint,
    start_worker: StartWorker,
    counters: redis.Redis,
    broker: redis.Redis,
    restoring_settings: Settings,
) -> None:
    settings = restoring_settings
    doomed = start_worker(
        jobs="4", worker_settings=settings, extra_env={"BLUEPRINT_TEST_FAULT": "pop"}
    )
    call = sleep_call(10)
    run = Run(blueprint, [call])
    wait_until(lambda: doomed.process.poll() is not None, what="the worker to die at its pop")
    assert doomed.process.returncode == -9

    # Off the queue, not yet handed to Celery: recorded, under the dead consumer.
    assert broker.llen(job_queue(4)) == 0
    (dead,) = consumers(broker)
    assert broker.hlen(consumer_in_flight_key(dead)) == 1
    assert broker.hlen(UNACKED) == 1
    assert counters.get(f"t:started:{call.call_id}") is None

    start_worker(jobs="4", worker_settings=settings)
    run.finish(timeout_s=30)
    run.assert_each_answered_once_and_ok()
    assert counters.get(f"t:started:{call.call_id}") == "1"
    wait_until(lambda: dead not in consumers(broker), what="the dead consumer to be forgotten")


def test_a_killed_workers_calls_are_answered_within_15_s_with_default_settings(
    blueprint: Blueprint,
    start_worker: StartWorker,
    counters: redis.Redis,
    redis_url: str,
) -> None:
    settings = Settings.from_redis_url(redis_url)  # default liveness and visibility timeout
    blueprint.with_settings(settings)
    victim = start_worker(jobs="4", concurrency=4, worker_settings=settings)
    calls = [sleep_call(2000) for _ in range(4)]
    run = Run(blueprint, calls)
    wait_until_started(counters, calls)
    start_worker(jobs="4", concurrency=4, worker_settings=settings)

    victim.kill()
    killed_at = time.monotonic()
    run.finish(timeout_s=60)
    run.assert_each_answered_once_and_ok()
    delays_s = sorted(run.answered_at[call.call_id] - killed_at for call in calls)
    print(f"answered {', '.join(f'{d:.1f}' for d in delays_s)} s after the kill")
    assert delays_s[-1] < 15
    assert all(counters.get(f"t:started:{call.call_id}") == "2" for call in calls)


def test_a_call_running_longer_than_the_liveness_ttl_is_not_taken_from_its_worker(
    blueprint: Blueprint,
    start_worker: StartWorker,
    counters: redis.Redis,
    redis_url: str,
) -> None:
    settings = Settings.from_redis_url(redis_url, **{**LIVENESS_KNOBS, "local_time_limit_s": 10})
    blueprint.with_settings(settings)
    workers = [
        start_worker(pool="prefork", jobs="4", concurrency=1, worker_settings=settings),
        start_worker(pool="threads", jobs="4", concurrency=1, worker_settings=settings),
    ]
    # 4 s: four liveness TTLs and twenty restore rounds of the other worker.
    calls = [sleep_call(4000), sleep_call(4000)]
    run = Run(blueprint, calls)
    run.finish(timeout_s=60)
    run.assert_each_answered_once_and_ok()
    for call in calls:
        assert counters.get(f"t:started:{call.call_id}") == "1"
    assert not any("restored" in worker.output() for worker in workers)


def test_a_restorer_killed_mid_restore_loses_nothing(
    blueprint: Blueprint,
    start_worker: StartWorker,
    counters: redis.Redis,
    broker: redis.Redis,
    restoring_settings: Settings,
) -> None:
    # Three messages to restore one by one: the calls must not share one (a batch).
    settings = restoring_settings.model_copy(update={"batch_max_calls": 1})
    blueprint.with_settings(settings)
    victim = start_worker(jobs="4", concurrency=3, worker_settings=settings)
    calls = [sleep_call(3000) for _ in range(3)]
    run = Run(blueprint, calls)
    wait_until_started(counters, calls)
    (dead,) = consumers(broker)
    victim.kill()

    restorer = start_worker(
        jobs="4", worker_settings=settings, extra_env={"BLUEPRINT_TEST_FAULT": "restore"}
    )
    wait_until(lambda: restorer.process.poll() is not None, what="the restorer to die")
    # It died right after putting back the first of the three.
    assert broker.hlen(consumer_in_flight_key(dead)) == 2

    start_worker(jobs="4", worker_settings=settings)
    run.finish(timeout_s=60)
    run.assert_each_answered_once_and_ok()
    wait_until(lambda: not consumers(broker) & {dead}, what="the dead consumer to be forgotten")


def test_fifty_kills_at_random_instants_lose_no_call_of_a_thousand(
    blueprint: Blueprint,
    start_worker: StartWorker,
    counters: redis.Redis,
    restoring_settings: Settings,
) -> None:
    settings = restoring_settings
    pools = ["threads", "threads", "prefork"]

    def fresh_worker(n: int) -> WorkerProcess:
        return start_worker(
            pool=pools[n % len(pools)],
            jobs="4",
            concurrency=2,
            worker_settings=settings,
            wait_ready=False,
        )

    started = 0
    workers = []
    for _ in range(3):
        workers.append(fresh_worker(started))
        started += 1
    calls = [sleep_call(15, n=n) for n in range(1000)]
    kills = 0

    def paced() -> Iterator[JobCall]:
        # Call n waits for its share of the kills, so that they fall all along the run and
        # the last calls are published after the last kill.
        for n, call in enumerate(calls):
            kills_due = (n + 1) * _KILLS // len(calls)
            wait_until(lambda: kills >= kills_due, 120, "the next kill")  # noqa: B023
            yield call

    run = Run(blueprint, calls, max_in_flight=50, producer=paced())
    chance = random.Random(20261202)
    while run.thread.is_alive() and kills < _KILLS:
        # A random instant while at least two workers serve: each kill costs a fresh start.
        time.sleep(chance.uniform(0.05, 0.4))
        ready = [worker for worker in workers if worker.is_ready()]
        if len(ready) < 2:
            continue
        victim = chance.choice(ready)
        victim.kill()
        kills += 1
        workers.remove(victim)
        workers.append(fresh_worker(started))
        started += 1
    run.finish(timeout_s=180)
    print(f"{kills} kills, {len(run.results)} results")
    assert kills == _KILLS, f"the run ended after {kills} kills"
    run.assert_each_answered_once_and_ok()
    assert all(counters.get(f"t:started:{call.call_id}") for call in calls)
