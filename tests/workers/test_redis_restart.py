"""Redis restarted in the middle of a run: workers and runner reconnect and finish the run."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from dispatcher import Blueprint, BlueprintRunner, JobCall, JobResult, Settings
from tests.workers.conftest import FAST_KNOBS, RedisServer, StartWorker, free_port, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def restartable_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server with append-only persistence (fsync always), on a free port."""
    server = RedisServer(free_port(), tmp_path / "redis", appendonly=True)
    server.data_dir.mkdir()
    server.start()
    yield server
    server.stop()


def test_workers_and_runner_survive_a_redis_restart_and_every_call_completes(
    restartable_redis: RedisServer,
    blueprint: Blueprint,
    start_worker: StartWorker,
    counters: redis.Redis,
) -> None:
    settings = Settings.from_redis_url(restartable_redis.url(0), **FAST_KNOBS)
    blueprint.with_settings(settings)
    start_worker(pool="threads", concurrency=4, jobs="4", worker_settings=settings)
    start_worker(pool="gevent", concurrency=4, jobs="4", worker_settings=settings)
    calls = [JobCall(4, (100).to_bytes(4, "big")) for _ in range(60)]
    results: list[JobResult] = []
    runner = (
        BlueprintRunner.builder(settings)
        .app(blueprint)
        .producer(calls)
        .consumer(results.append)
        .max_in_flight(10)
    )
    thread = threading.Thread(target=runner.run)
    thread.start()
    wait_until(lambda: len(results) >= 10, what="the first results")

    restartable_redis.stop()
    restartable_redis.start()

    thread.join(timeout=120)
    assert not thread.is_alive(), f"{len(results)} of {len(calls)} results after the restart"
    assert sorted(r.call_id for r in results) == sorted(c.call_id for c in calls)
    assert all(r.ok for r in results)


def test_thirty_runs_through_two_redis_restarts_each_answer_every_call_exactly_once(
    restartable_redis: RedisServer,
    blueprint: Blueprint,
    start_worker: StartWorker,
    counters: redis.Redis,
) -> None:
    settings = Settings.from_redis_url(restartable_redis.url(0), **FAST_KNOBS)
    blueprint.with_settings(settings)
    workers = [
        start_worker(pool="threads", concurrency=4, jobs="4", worker_settings=settings),
        start_worker(pool="prefork", concurrency=2, jobs="4", worker_settings=settings),
    ]
    for round_number in range(30):
        calls = [JobCall(4, (50).to_bytes(4, "big"), metadata={"round": round_number})]
        calls += [JobCall(4, (50).to_bytes(4, "big")) for _ in range(19)]
        results: list[JobResult] = []
        runner = (
            BlueprintRunner.builder(settings)
            .app(blueprint)
            .producer(calls)
            .consumer(results.append)
            .max_in_flight(8)
        )
        thread = threading.Thread(target=runner.run, daemon=True)
        thread.start()
        for answered in (3, 10):
            wait_until(_has_at_least(results, answered), what=f"{answered} results")
            restartable_redis.stop()
            time.sleep(1)  # the outage itself: Redis stays down for a second
            restartable_redis.start()
        thread.join(timeout=60)
        assert not thread.is_alive(), f"round {round_number}: {len(results)} of 20 answered"
        assert Counter(r.call_id for r in results) == Counter(c.call_id for c in calls)
        assert all(r.ok for r in results), [r.error for r in results if not r.ok]
        for worker in workers:
            assert worker.process.poll() is None, f"round {round_number}:\n{worker.output()}"


def _has_at_least(results: list[JobResult], count: int) -> Callable[[], bool]:
    return lambda: len(results) >= count
