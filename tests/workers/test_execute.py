"""The execute task end to end: real Redis, real worker processes, the real reference server."""

from __future__ import annotations

import itertools
import json
import threading
from typing import Any

import pytest
import redis
from celery import states

from dispatcher import Blueprint, BlueprintRunner, JobCall, JobResult, Settings
from dispatcher.keys import (
    EXECUTE_TASK,
    job_queue,
)
from providers.errors import ErrorKind
from tests.workers.conftest import FlakyFunction, StartWorker, flaky_args, wait_until
from workers._results import BACKEND_PATH

pytestmark = pytest.mark.integration


def u64(x: int) -> bytes:
    return x.to_bytes(8, "big")


def run_calls(blueprint: Blueprint, calls: list[JobCall], **builder: Any) -> list[JobResult]:
    results: list[JobResult] = []
    runner = BlueprintRunner.builder(blueprint.settings).app(blueprint).producer(calls)
    if "max_in_flight" in builder:
        runner = runner.max_in_flight(builder["max_in_flight"])
    runner.consumer(results.append).run()
    return results


def by_call(results: list[JobResult]) -> dict[str, JobResult]:
    return {result.call_id: result for result in results}


@pytest.mark.parametrize("pool", ["threads", "prefork", "gevent"])
def test_a_local_job_round_trips_on_every_pool(
    pool: str, blueprint: Blueprint, start_worker: StartWorker
) -> None:
    start_worker(pool=pool, concurrency=2)
    calls = [JobCall(0, u64(x)) for x in (3, 2**32 + 1)]
    results = by_call(run_calls(blueprint, calls))
    assert int.from_bytes(results[calls[0].call_id].body, "big") == 9
    assert int.from_bytes(results[calls[1].call_id].body, "big") == (2**32 + 1) ** 2
    assert all(r.ok and r.ran_on == "local" and r.attempts == 1 for r in results.values())


def test_a_busy_gevent_worker_acknowledges_every_call(
    blueprint: Blueprint, start_worker: StartWorker
) -> None:
    # Green threads acknowledge concurrently, each on a broker connection of its own: past the
    # transport's connection cap an ack failed ("Couldn't ack") and a call read off the queue
    # could be lost before it was recorded as unacknowledged.
    concurrency = 48
    worker = start_worker(pool="gevent", concurrency=concurrency, jobs="4")
    calls = [JobCall(4, (20).to_bytes(4, "big")) for _ in range(6 * concurrency)]
    results = run_calls(blueprint, calls, max_in_flight=2 * concurrency)
    assert sorted(r.call_id for r in results if r.ok) == sorted(c.call_id for c in calls)
    assert "Couldn't ack" not in worker.output()


def test_a_faas_job_runs_on_the_reference_server(
    blueprint: Blueprint, start_worker: StartWorker
) -> None:
    worker = start_worker(pool="gevent", concurrency=10)
    call = JobCall(1, u64(12), metadata={"block": 7})
    (result,) = run_calls(blueprint, [call])
    assert result.ok, result.error
    assert "/invoke" not in worker.output(), "httpx's request line (full URL) is not logged"
    assert int.from_bytes(result.body, "big") == 144
    assert result.ran_on == "custom"
    assert result.metadata == {"block": 7}
    assert result.metrics is not None and result.metrics.total_ms > 0


def test_mixed_jobs_in_one_run_each_get_their_result(
    blueprint: Blueprint, start_worker: StartWorker
) -> None:
    start_worker(pool="threads", concurrency=4)
    calls = [JobCall(job_id, u64(x), metadata={"x": x}) for x in range(5) for job_id in (0, 1)]
    calls.append(JobCall(3, b""))
    results = by_call(run_calls(blueprint, calls))
    assert set(results) == {call.call_id for call in calls}
    for call in calls[:-1]:
        result = results[call.call_id]
        assert result.ok and int.from_bytes(result.body, "big") == call.metadata["x"] ** 2
        assert result.ran_on == ("local" if call.job_id == 0 else "custom")
    assert not results[calls[-1].call_id].ok


def test_metadata_and_args_reach_the_handler_and_come_back(
    blueprint: Blueprint, start_worker: StartWorker
) -> None:
    start_worker()
    call = JobCall(2, b"\x00\xff", metadata={"block": 12, "tx": "0xab", "nested": {"a": [1]}})
    (result,) = run_calls(blueprint, [call])
    assert json.loads(result.body) == {
        "args_hex": "00ff",
        "attempt": 1,
        "metadata": {"block": 12, "nested": {"a": [1]}, "tx": "0xab"},
    }
    assert result.metadata == call.metadata and result.call_id == call.call_id


def test_a_throttled_function_is_retried_with_backoff_until_it_succeeds(
    blueprint: Blueprint, start_worker: StartWorker, flaky_function: FlakyFunction
) -> None:
    start_worker(pool="gevent", concurrency=10)
    throttled = JobCall(5, flaky_args("throttled", fail=2, status=429, retry_after=1, x=5))
    unavailable = JobCall(5, flaky_args("unavailable", fail=1, status=503, x=6))
    results = by_call(run_calls(blueprint, [throttled, unavailable]))

    assert results[throttled.call_id].ok and results[throttled.call_id].attempts == 3
    assert int.from_bytes(results[throttled.call_id].body, "big") == 25
    times = flaky_function.attempts["throttled"]
    assert len(times) == 3
    # Retry-After is a floor for the full-jitter delay.
    assert all(later - earlier >= 1.0 for earlier, later in itertools.pairwise(times))
    assert results[unavailable.call_id].ok and results[unavailable.call_id].attempts == 2


# 3 is also Celery's default max_retries, which once stood in for the configured maximum.
@pytest.mark.parametrize("retry_max", [3, 4])
def test_retries_stop_at_the_configured_maximum_with_an_error_result(
    retry_max: int, blueprint: Blueprint, start_worker: StartWorker, flaky_function: FlakyFunction
) -> None:
    settings = blueprint.settings.model_copy(update={"retry_max": retry_max})
    start_worker(pool="threads", worker_settings=settings)
    key = f"always-{retry_max}"
    call = JobCall(5, flaky_args(key, fail=100, status=503))
    (result,) = run_calls(blueprint.with_settings(settings), [call])
    assert not result.ok and result.error is not None
    assert result.error.kind == "throttled"
    assert result.error.message.startswith(f"gave up after {retry_max + 1} attempts: ")
    assert result.attempts == retry_max + 1
    assert len(flaky_function.attempts[key]) == retry_max + 1


def test_a_function_error_is_reported_at_once_without_retries(
    blueprint: Blueprint, start_worker: StartWorker
) -> None:
    start_worker()
    faas_call, local_call = JobCall(6, u64(1)), JobCall(3, b"")
    results = by_call(run_calls(blueprint, [faas_call, local_call]))
    faas = results[faas_call.call_id]
    assert not faas.ok and faas.attempts == 1 and faas.ran_on == "custom"
    assert faas.error is not None and faas.error.kind == "function_error"
    assert "division by zero" in faas.error.message and not faas.error.retryable
    local = results[local_call.call_id]
    assert local.error is not None and local.error.kind == "function_error"
    assert local.error.message == "ValueError: the job failed on purpose" and local.attempts == 1


def test_an_unknown_job_is_an_error_result_from_the_runner(
    blueprint: Blueprint, start_worker: StartWorker
) -> None:
    call = JobCall(99, b"")
    (result,) = run_calls(blueprint, [call])
    assert not result.ok and result.error is not None and result.error.kind == ErrorKind.UNKNOWN_JOB


def test_unknown_and_malformed_messages_get_error_results_and_the_worker_keeps_serving(
    settings: Settings, start_worker: StartWorker
) -> None:
    from celery import Celery

    start_worker(pool="prefork", concurrency=2)
    client = Celery("raw-client", set_as_current=False)
    client.conf.update(settings.celery_connection_config())
    unknown = JobCall(99, b"").to_wire()
    sends = {
        "unknown": ([{**unknown}], unknown["call_id"]),
        "bad_base64": ([{"job_id": 0, "args": "%%%", "call_id": "c-1"}], "c-1"),
        "not_a_dict": (["junk"], "c-2"),
        "no_args": ([], "c-3"),
    }
    outcomes = {}
    for name, (args, task_id) in sends.items():
        sent = client.send_task(EXECUTE_TASK, args=args, task_id=task_id, queue=job_queue(0))
        outcomes[name] = JobResult.from_wire(sent.get(timeout=20))
    assert outcomes["unknown"].error is not None
    assert outcomes["unknown"].error.kind == ErrorKind.UNKNOWN_JOB
    for name in ("bad_base64", "not_a_dict", "no_args"):
        error = outcomes[name].error
        assert error is not None and error.kind == ErrorKind.MALFORMED_CALL, name
        assert outcomes[name].job_id == 0
    # The worker still serves after the bad messages.
    ok = JobResult.from_wire(
        client.send_task(
            EXECUTE_TASK,
            args=[(c := JobCall(0, u64(4))).to_wire()],
            task_id=c.call_id,
            queue=job_queue(0),
        ).get(timeout=20)
    )
    assert ok.ok and int.from_bytes(ok.body, "big") == 16


def test_a_call_whose_result_is_stored_is_not_invoked_again(
    blueprint: Blueprint, start_worker: StartWorker, flaky_function: FlakyFunction
) -> None:
    start_worker(pool="threads")
    call = JobCall(5, flaky_args("once", x=3))
    (first,) = run_calls(blueprint, [call])
    # The same message delivered again (a redelivery after a lost ack, or a re-send).
    (second,) = run_calls(blueprint, [call])
    assert first.ok and second == first
    assert len(flaky_function.attempts["once"]) == 1


@pytest.mark.parametrize("state", [states.FAILURE, states.REVOKED])
def test_a_call_whose_failure_is_stored_is_answered_without_running_it(
    state: str,
    blueprint: Blueprint,
    redis_url: str,
    start_worker: StartWorker,
    flaky_function: FlakyFunction,
) -> None:
    from celery import Celery

    worker = start_worker(pool="threads")
    key = f"stored-{state}"
    call = JobCall(5, flaky_args(key, x=3))
    # The outcome a worker (or a revoke) stored before the call was sent again.
    client = Celery("store-outcome", set_as_current=False)
    client.conf.update(result_backend=f"{BACKEND_PATH}+{redis_url}")
    if state == states.FAILURE:
        client.backend.mark_as_failure(call.call_id, RuntimeError("the first run crashed"))
    else:
        client.backend.mark_as_revoked(call.call_id, "revoked by an operator")
    results: list[JobResult] = []
    runner = BlueprintRunner.builder(blueprint.settings).app(blueprint).producer([call])
    # A daemon: a runner never told of the stored outcome would wait forever.
    thread = threading.Thread(target=runner.consumer(results.append).run, daemon=True)
    thread.start()
    thread.join(timeout=20)

    assert not thread.is_alive(), "the runner was never told of the stored outcome"
    (result,) = results
    assert not result.ok and result.error is not None
    assert result.error.kind == ErrorKind.WORKER_FAILURE
    expected = "the first run crashed" if state == states.FAILURE else "revoked by an operator"
    assert expected in result.error.message
    assert f"call {call.call_id} already has a result" in worker.output()
    assert key not in flaky_function.attempts


def test_a_worker_killed_mid_job_leaves_the_call_to_another_worker_exactly_once(
    blueprint: Blueprint, start_worker: StartWorker, counters: redis.Redis
) -> None:
    doomed = start_worker(pool="threads", concurrency=1, jobs="4")
    call = JobCall(4, (1500).to_bytes(4, "big"))
    results: list[JobResult] = []
    runner = BlueprintRunner.builder(blueprint.settings).app(blueprint).producer([call])
    thread = threading.Thread(target=runner.consumer(results.append).run)
    thread.start()
    wait_until(lambda: counters.get(f"t:started:{call.call_id}"), what="the job to start")
    doomed.kill()
    start_worker(pool="prefork", concurrency=1, jobs="4")
    thread.join(timeout=60)
    assert not thread.is_alive()
    assert len(results) == 1 and results[0].ok
    assert counters.get(f"t:started:{call.call_id}") == "2"
    assert counters.get(f"t:finished:{call.call_id}") == "1"


def test_two_workers_on_one_queue_run_each_call_once(
    blueprint: Blueprint, start_worker: StartWorker, counters: redis.Redis
) -> None:
    threads = start_worker(pool="threads", concurrency=3, jobs="4")
    start_worker(pool="prefork", concurrency=3, jobs="4")
    calls = [JobCall(4, (40).to_bytes(4, "big")) for _ in range(30)]
    results = run_calls(blueprint, calls)
    assert sorted(r.call_id for r in results) == sorted(c.call_id for c in calls)
    assert all(counters.get(f"t:started:{c.call_id}") == "1" for c in calls)
    # Each result names the pid that ran it: the threads worker's, or a prefork child's.
    ran_on = {int(r.body) for r in results}
    assert threads.process.pid in ran_on, "the threads worker took a share"
    assert ran_on - {threads.process.pid}, "the prefork worker took a share"


def test_the_runner_keeps_no_more_than_the_bound_in_flight(
    blueprint: Blueprint, start_worker: StartWorker, counters: redis.Redis
) -> None:
    start_worker(pool="threads", concurrency=8, jobs="4")
    bound, consumed, yielded, gaps = 3, [0], [0], []

    def producer():  # type: ignore[no-untyped-def]
        for _ in range(20):
            yielded[0] += 1
            gaps.append(yielded[0] - consumed[0])
            yield JobCall(4, (30).to_bytes(4, "big"))

    def consume(result: JobResult) -> None:
        consumed[0] += 1

    summary = (
        BlueprintRunner.builder(blueprint.settings)
        .app(blueprint)
        .producer(producer)
        .consumer(consume)
        .max_in_flight(bound)
        .run()
    )
    assert summary.succeeded == 20 and summary.peak_in_flight == bound
    # Besides those in flight, the runner reads up to a batch ahead (min(batch, bound)):
    # the calls waiting for a slot, published together when results make room.
    assert max(gaps) <= 2 * bound
    assert max(int(v) for v in counters.lrange("t:running_samples", 0, -1)) <= bound
