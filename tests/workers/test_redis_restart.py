"""Redis restarted in the middle of a run: workers and runner reconnect and finish the run."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dispatcher import Blueprint, JobCall, JobResult, Settings
from tests.workers.conftest import FAST_KNOBS, RedisServer, Run, StartWorker, free_port, wait_until

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
    restartable_redis: RedisServer, blueprint: Blueprint, start_worker: StartWorker
) -> None:
    settings = Settings.from_redis_url(restartable_redis.url(0), **FAST_KNOBS)
    blueprint.with_settings(settings)
    start_worker(pool="threads", concurrency=4, jobs="4", worker_settings=settings)
    start_worker(pool="gevent", concurrency=4, jobs="4", worker_settings=settings)
    run = Run(blueprint, [JobCall(4, (100).to_bytes(4, "big")) for _ in range(60)], 10)
    wait_until(lambda: len(run.results) >= 10, what="the first results")

    restartable_redis.stop()
    restartable_redis.start()

    run.finish(timeout_s=120)
    run.assert_each_answered_once_and_ok()


def test_thirty_runs_through_two_redis_restarts_each_answer_every_call_exactly_once(
    restartable_redis: RedisServer, blueprint: Blueprint, start_worker: StartWorker
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
        run = Run(blueprint, calls, max_in_flight=8)
        for answered in (3, 10):
            wait_until(_has_at_least(run.results, answered), what=f"{answered} results")
            restartable_redis.stop()
            time.sleep(1)  # the outage itself: Redis stays down for a second
            restartable_redis.start()
        run.finish(timeout_s=60)
        run.assert_each_answered_once_and_ok()
        for worker in workers:
            assert worker.process.poll() is None, f"round {round_number}:\n{worker.output()}"


def _has_at_least(results: list[JobResult], count: int) -> Callable[[], bool]:
    return lambda: len(results) >= count
