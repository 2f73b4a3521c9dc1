"""Batches on the wire, calls everywhere else: real Redis, real workers, real runners.

A batch is one message carrying several calls of one job. These tests look at the wire (the
messages on a job queue before any worker takes them) and at what each call of a batch gets
back: its own result, in completion order, exactly once, through a SIGKILL of its worker,
a malformed neighbour, a retry and a time limit.
"""

from __future__ import annotations

import base64
import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from dispatcher import Blueprint, BlueprintRunner, JobCall, JobResult, Settings
from dispatcher._celery_client import CeleryClient
from dispatcher.keys import (
    CONSUMERS_KEY,
    EXECUTE_BATCH_TASK,
    EXECUTE_TASK,
    INVOCATION_LEDGER_KEY,
    consumer_in_flight_key,
    job_queue,
)
from providers.errors import ErrorKind
from tests.workers.conftest import (
    FAST_KNOBS,
    FlakyFunction,
    RedisServer,
    Run,
    StartWorker,
    flaky_args,
    free_port,
    wait_until,
)

pytestmark = pytest.mark.integration

LIVENESS_KNOBS: dict[str, Any] = {
    **FAST_KNOBS,
    "visibility_timeout_s": 3600,
    "liveness_ttl_s": 1,
    "restore_interval_s": 0.2,
}


def sleep_call(ms: int, **metadata: Any) -> JobCall:
    """A call of job 4, which sleeps ``ms`` and counts its starts in the counters Redis."""
    return JobCall(4, ms.to_bytes(4, "big"), metadata=metadata)


def u64(x: int) -> bytes:
    return x.to_bytes(8, "big")


@pytest.fixture
def broker(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


@pytest.fixture
def client(settings: Settings) -> Iterator[CeleryClient]:
    celery_client = CeleryClient(settings)
    yield celery_client
    celery_client.close()


def queued_messages(broker: redis.Redis, job_id: int) -> list[dict[str, Any]]:
    """The kombu messages waiting on a job's queue, oldest first."""
    raw = broker.lrange(job_queue(job_id), 0, -1)
    return [json.loads(item) for item in reversed(raw)]


def message_calls(message: dict[str, Any]) -> list[dict[str, Any]]:
    args, _, _ = json.loads(base64.b64decode(message["body"]))
    return list(args[0]) if message["headers"]["task"] == EXECUTE_BATCH_TASK else [args[0]]


def stored_result(client: CeleryClient, call_id: str) -> JobResult | None:
    meta = client.backend.get_task_meta(call_id, cache=False)
    return JobResult.from_wire(meta["result"]) if meta["status"] == "SUCCESS" else None


def wait_for_results(client: CeleryClient, call_ids: list[str]) -> dict[str, JobResult]:
    results: dict[str, JobResult] = {}

    def all_stored() -> bool:
        for call_id in call_ids:
            if call_id not in results:
                result = stored_result(client, call_id)
                if result is not None:
                    results[call_id] = result
        return len(results) == len(call_ids)

    wait_until(all_stored, 60, "every call of the batch to have a result")
    return results


def send_batch(client: CeleryClient, job_id: int, wires: list[Any]) -> None:
    """Publish a batch message as the runner does, with elements of the test's choosing."""
    client.app.send_task(
        EXECUTE_BATCH_TASK,
        args=(wires,),
        task_id="batch-under-test",
        queue=job_queue(job_id),
        argsrepr="<batch>",
        ignore_result=True,
    )


# -- the runner's side of the wire ------------------------------------------------------------


def test_ready_calls_share_messages_and_a_lone_call_goes_out_at_once(
    blueprint: Blueprint, broker: redis.Redis, start_worker: StartWorker
) -> None:
    calls = [JobCall(0, u64(n)) for n in range(40)]
    last = JobCall(0, u64(99))
    release_last = threading.Event()

    def producer() -> Iterator[JobCall]:
        yield from calls
        release_last.wait(60)
        yield last

    run = Run(blueprint, [*calls, last], max_in_flight=100, producer=producer())
    wait_until(
        lambda: sum(len(message_calls(m)) for m in queued_messages(broker, 0)) == len(calls),
        what="the first calls to be published",
    )
    messages = queued_messages(broker, 0)
    assert len(messages) < len(calls), "ready calls were not batched"
    assert max(len(message_calls(m)) for m in messages) <= blueprint.settings.batch_max_calls
    published = [wire["call_id"] for m in messages for wire in message_calls(m)]
    assert sorted(published) == sorted(call.call_id for call in calls)
    for message in messages:
        if message["headers"]["task"] == EXECUTE_BATCH_TASK:
            summary = message["headers"]["argsrepr"]
            assert summary.startswith("<batch job_id=0 calls=")
            assert message["headers"]["id"] not in published

    # The producer is still blocked on the last call, and no result can come back: the call
    # it then yields is published alone, without waiting for company.
    release_last.set()
    wait_until(lambda: len(queued_messages(broker, 0)) == len(messages) + 1, what="the last call")
    lone = queued_messages(broker, 0)[-1]
    assert lone["headers"]["task"] == EXECUTE_TASK
    assert lone["headers"]["id"] == last.call_id

    start_worker(jobs="0")
    run.finish(timeout_s=60)
    run.assert_each_answered_once_and_ok()
    squares = {r.call_id: int.from_bytes(r.body, "big") for r in run.results}
    assert squares[last.call_id] == 99**2
    assert all(squares[call.call_id] == int.from_bytes(call.args, "big") ** 2 for call in calls)


def test_with_batch_max_calls_1_every_call_is_its_own_execute_message(
    blueprint: Blueprint, redis_url: str, broker: redis.Redis, start_worker: StartWorker
) -> None:
    settings = Settings.from_redis_url(redis_url, **{**FAST_KNOBS, "batch_max_calls": 1})
    blueprint.with_settings(settings)
    calls = [JobCall(0, u64(n)) for n in range(20)]
    run = Run(blueprint, calls, max_in_flight=100)
    wait_until(lambda: len(queued_messages(broker, 0)) == len(calls), what="every call")
    messages = queued_messages(broker, 0)
    assert {m["headers"]["task"] for m in messages} == {EXECUTE_TASK}
    assert sorted(m["headers"]["id"] for m in messages) == sorted(c.call_id for c in calls)
    assert all(message_calls(m)[0]["call_id"] == m["headers"]["id"] for m in messages)
    start_worker(jobs="0", worker_settings=settings)
    run.finish(timeout_s=60)
    run.assert_each_answered_once_and_ok()


# -- the worker's side ----------------------------------------------------------------------


def test_each_call_of_a_mixed_batch_gets_its_own_result_once(
    client: CeleryClient,
    start_worker: StartWorker,
    flaky_function: FlakyFunction,
) -> None:
    start_worker(jobs="5")
    key = uuid.uuid4().hex
    ok = JobCall(5, flaky_args(f"{key}-ok", x=3))
    retried = JobCall(5, flaky_args(f"{key}-retried", fail=1, status=503, x=4))
    permanent = JobCall(5, flaky_args(f"{key}-permanent", fail=9, status=400))
    malformed = {"job_id": 5, "args": "not base64!", "call_id": "malformed-1"}
    nameless = {"job_id": 5, "args": ""}
    wires = [ok.to_wire(), malformed, retried.to_wire(), nameless, permanent.to_wire()]
    send_batch(client, 5, wires)

    ids = [ok.call_id, "malformed-1", retried.call_id, permanent.call_id]
    results = wait_for_results(client, ids)
    assert int.from_bytes(results[ok.call_id].body, "big") == 9
    assert results[ok.call_id].attempts == 1
    assert int.from_bytes(results[retried.call_id].body, "big") == 16
    assert results[retried.call_id].attempts == 2
    bad = results["malformed-1"].error
    assert bad is not None and bad.kind == ErrorKind.MALFORMED_CALL
    refused = results[permanent.call_id].error
    assert refused is not None and refused.status == 400 and not refused.retryable
    assert len(flaky_function.attempts[f"{key}-ok"]) == 1
    assert len(flaky_function.attempts[f"{key}-retried"]) == 2
    assert len(flaky_function.attempts[f"{key}-permanent"]) == 1


def test_results_of_a_batch_arrive_in_completion_order(
    client: CeleryClient, start_worker: StartWorker, counters: redis.Redis, redis_url: str
) -> None:
    start_worker(jobs="4", concurrency=4)
    slow = sleep_call(2500)
    fast = [sleep_call(10) for _ in range(3)]
    listener = redis.Redis.from_url(redis_url).pubsub()
    keys = {client.backend.get_key_for_task(c.call_id).decode(): c for c in [slow, *fast]}
    listener.subscribe(*keys)
    client.publish_batch([slow, *fast])

    heard: list[str] = []
    slow_done_when_fast_heard: list[bool] = []

    def heard_all() -> bool:
        message = listener.get_message(timeout=0.1)
        if message is not None and message["type"] == "message":
            heard.append(keys[message["channel"].decode()].call_id)
            if len(heard) == len(fast):
                slow_done_when_fast_heard.append(
                    counters.get(f"t:finished:{slow.call_id}") is not None
                )
        return len(heard) == 1 + len(fast)

    wait_until(heard_all, 60, "every result to be announced")
    listener.close()
    assert heard[-1] == slow.call_id
    assert sorted(heard[:-1]) == sorted(c.call_id for c in fast)
    assert slow_done_when_fast_heard == [False], "the fast results waited for the slow one"


def test_a_call_past_its_time_limit_gets_a_timeout_and_the_rest_of_its_batch_completes(
    client: CeleryClient, start_worker: StartWorker
) -> None:
    # FAST_KNOBS: the soft limit is the FaaS timeout (3 s) plus half the margin (1 s).
    start_worker(jobs="4", concurrency=2)
    stuck, quick = sleep_call(7000), sleep_call(10)
    client.publish_batch([stuck, quick])
    results = wait_for_results(client, [stuck.call_id, quick.call_id])
    assert results[quick.call_id].ok
    error = results[stuck.call_id].error
    assert error is not None and error.kind == ErrorKind.TIMEOUT


def test_a_worker_killed_mid_batch_reruns_only_the_calls_without_a_result(
    blueprint: Blueprint,
    redis_url: str,
    client: CeleryClient,
    broker: redis.Redis,
    start_worker: StartWorker,
    counters: redis.Redis,
) -> None:
    settings = Settings.from_redis_url(redis_url, **LIVENESS_KNOBS)
    victim = start_worker(jobs="4", concurrency=4, worker_settings=settings)
    fast = [sleep_call(10) for _ in range(2)]
    slow = [sleep_call(2500) for _ in range(2)]
    client.publish_batch([*fast, *slow])
    wait_until(
        lambda: (
            all(stored_result(client, c.call_id) for c in fast)
            and all(counters.get(f"t:started:{c.call_id}") for c in slow)
        ),
        what="the fast calls to be answered while the slow ones run",
    )
    victim.kill()

    start_worker(jobs="4", concurrency=4, worker_settings=settings)
    results = wait_for_results(client, [c.call_id for c in [*fast, *slow]])
    assert all(result.ok for result in results.values())
    assert all(counters.get(f"t:started:{c.call_id}") == "1" for c in fast)
    assert all(counters.get(f"t:started:{c.call_id}") == "2" for c in slow)
    wait_until(lambda: broker.hlen("unacked") == 0, what="the batch to be acknowledged")
    for member in broker.smembers(CONSUMERS_KEY):
        consumer_id = member.decode() if isinstance(member, bytes) else member
        assert broker.hlen(consumer_in_flight_key(consumer_id)) == 0


def test_a_batch_of_faas_calls_is_ledgered_and_summarised_call_by_call(
    blueprint: Blueprint,
    client: CeleryClient,
    redis_url: str,
    start_worker: StartWorker,
) -> None:
    worker = start_worker(jobs="1", concurrency=2)
    calls = [JobCall(1, u64(1234567 + n), metadata={"secret-key": "v"}) for n in range(3)]
    client.publish_batch(calls)
    results = wait_for_results(client, [c.call_id for c in calls])
    assert all(r.ok and r.ran_on == "custom" and r.metrics is not None for r in results.values())
    ledger = redis.Redis.from_url(redis_url)
    wait_until(lambda: ledger.xlen(INVOCATION_LEDGER_KEY) == 3, what="a ledger entry per call")
    wait_until(lambda: "execute_batch" in worker.output(), what="the batch's log lines")
    output = worker.output()
    for call in calls:
        assert base64.b64encode(call.args).decode() not in output
    assert "1234567" not in output


def test_the_runner_answers_every_call_once_when_batches_form(
    blueprint: Blueprint, start_worker: StartWorker
) -> None:
    start_worker(jobs="0,2", concurrency=4)
    calls = [JobCall(0 if n % 2 else 2, u64(n), metadata={"n": n}) for n in range(200)]
    results: list[JobResult] = []
    summary = (
        BlueprintRunner.builder(blueprint.settings)
        .app(blueprint)
        .producer(calls)
        .consumer(results.append)
        .max_in_flight(64)
        .run()
    )
    assert summary.submitted == 200 and summary.succeeded == 200
    assert sorted(r.call_id for r in results) == sorted(c.call_id for c in calls)
    assert all(
        r.metadata == c.metadata
        for r, c in zip(
            sorted(results, key=lambda r: r.call_id),
            sorted(calls, key=lambda c: c.call_id),
            strict=True,
        )
    )


def test_a_batch_runs_on_the_embedded_transport_and_file_backend(
    tmp_path: Path, start_worker: StartWorker
) -> None:
    settings = Settings(data_dir=tmp_path / "embedded", **FAST_KNOBS)
    start_worker(jobs="0", worker_settings=settings)
    embedded = CeleryClient(settings)
    try:
        calls = [JobCall(0, u64(n)) for n in range(5)]
        embedded.publish_batch(calls)
        results = wait_for_results(embedded, [call.call_id for call in calls])
    finally:
        embedded.close()
    assert [int.from_bytes(results[c.call_id].body, "big") for c in calls] == [0, 1, 4, 9, 16]


def test_a_redis_restart_mid_batch_leaves_each_call_one_result(
    tmp_path: Path, start_worker: StartWorker, counters: redis.Redis
) -> None:
    server = RedisServer(free_port(), tmp_path / "redis", appendonly=True)
    server.data_dir.mkdir()
    server.start()
    try:
        settings = Settings.from_redis_url(server.url(0), **FAST_KNOBS)
        start_worker(jobs="4", concurrency=4, worker_settings=settings)
        restarted = CeleryClient(settings)
        try:
            calls = [sleep_call(1500) for _ in range(4)] + [sleep_call(10) for _ in range(4)]
            restarted.publish_batch(calls)
            wait_until(
                lambda: all(counters.get(f"t:started:{c.call_id}") for c in calls[:4]),
                what="the slow calls to start",
            )
            server.stop()  # the calls finish while Redis is away, and store once it is back
            server.start()
            results = wait_for_results(restarted, [call.call_id for call in calls])
        finally:
            restarted.close()
    finally:
        server.stop()
    # The calls that finished while Redis was away stored their results once it was back.
    assert all(result.ok for result in results.values())
    assert {result.call_id for result in results.values()} == {call.call_id for call in calls}
    assert all(counters.get(f"t:finished:{call.call_id}") for call in calls)
