"""Every FaaS invocation of a real prefork worker is counted, priced and written to the ledger.

A real ``blueprint-faas worker --pool prefork`` runs FaaS jobs on the reference server (priced
like Lambda for the test), a failing function and a throttling one, plus local jobs; the test
scrapes the worker's own exporter and reads the ledger stream, and checks both add up to the
results the runner got.
"""

from __future__ import annotations

import dataclasses
import math
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from dispatcher import Blueprint, JobCall, JobResult, Settings
from dispatcher.keys import INVOCATION_LEDGER_KEY, METRICS_MULTIPROC_DIR_ENV
from dispatcher.records import (
    LEDGER_MAXLEN,
    InvocationRecord,
    append_invocation,
    recent_invocations,
)
from providers.errors import ErrorKind
from providers.pricing import estimate_invocation_cost
from tests.workers import regions_app, retry_app
from tests.workers.conftest import StartWorker, flaky_args, free_port, wait_until
from tests.workers.test_execute import run_calls, u64
from workers.observe import price_book

pytestmark = pytest.mark.integration

#: Lambda's x86 list price, charged by the test's custom platform.
PER_GB_SECOND_USD = 0.0000166667
PER_MILLION_USD = 0.20
MEMORY_MB = 128  # tests.workers.apps.FAAS_CONFIG

_Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> _Samples:
    reply = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    reply.raise_for_status()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(reply.text)
        for sample in family.samples
    }


def value(samples: _Samples, name: str, **labels: str) -> float:
    return samples.get((f"blueprint_faas_{name}", frozenset(labels.items())), 0.0)


def total(samples: _Samples, name: str) -> float:
    return sum(v for (n, _), v in samples.items() if n == f"blueprint_faas_{name}")


@pytest.fixture
def priced_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "metrics_port": free_port(),
            "custom_price_per_gb_second_usd": PER_GB_SECOND_USD,
            "custom_price_per_million_requests_usd": PER_MILLION_USD,
        }
    )


def test_a_prefork_workers_exporter_counts_prices_and_ledgers_every_faas_attempt(
    blueprint: Blueprint, start_worker: StartWorker, priced_settings: Settings, redis_url: str
) -> None:
    start_worker(pool="prefork", concurrency=2, worker_settings=priced_settings)
    port = priced_settings.metrics_port
    key = uuid.uuid4().hex
    squares = [JobCall(1, u64(x)) for x in range(2, 7)]
    failures = [JobCall(6, b"x") for _ in range(2)]
    throttled = JobCall(5, flaky_args(f"throttle-{key}", fail=1, status=429, x=3))
    local = [JobCall(0, u64(x)) for x in range(2)]

    results = {r.call_id: r for r in run_calls(blueprint, [*squares, *failures, throttled, *local])}

    assert all(results[c.call_id].ok for c in [*squares, *local, throttled])
    assert all(results[c.call_id].error.kind == ErrorKind.FUNCTION_ERROR for c in failures)  # type: ignore[union-attr]
    assert results[throttled.call_id].attempts == 2
    faas_attempts = sum(r.attempts for r in results.values() if r.ran_on != "local")
    assert faas_attempts == len(squares) + len(failures) + 2
    # The observer runs after the result is stored: wait for the last attempt to be counted.
    samples = wait_until(
        lambda: (s := scrape(port)) and total(s, "invocations_total") == faas_attempts and s,
        20,
        "every attempt in the exporter",
    )

    square_results = [results[c.call_id] for c in squares]
    book = price_book(priced_settings)
    estimates = [
        estimate_invocation_cost("custom", r.metrics, memory_mb=MEMORY_MB, book=book)  # type: ignore[arg-type]
        for r in square_results
    ]
    job1 = {"job_id": "1", "provider": "custom"}
    assert value(samples, "invocations_total", **job1) == len(squares)
    assert value(samples, "results_total", **job1, outcome="ok", error_kind="none") == 5
    assert value(samples, "cold_starts_total", **job1) == sum(
        bool(r.metrics and r.metrics.cold_start) for r in square_results
    )
    assert value(samples, "invoke_duration_seconds_count", **job1) == len(squares)
    cost = value(samples, "estimated_cost_usd_total", **job1)
    assert cost > 0
    assert math.isclose(cost, sum(e.total_usd for e in estimates), rel_tol=1e-9)
    assert math.isclose(
        value(samples, "billed_duration_seconds_total", **job1),
        sum(e.billed_ms for e in estimates) / 1000,
        rel_tol=1e-9,
    )
    job6 = {"job_id": "6", "provider": "custom"}
    assert (
        value(samples, "results_total", **job6, outcome="error", error_kind="function_error") == 2
    )
    job5 = {"job_id": "5", "provider": "custom"}
    assert value(samples, "invocations_total", **job5) == 2
    assert value(samples, "results_total", **job5, outcome="error", error_kind="throttled") == 1
    assert value(samples, "throttles_total", **job5) == 1
    assert value(samples, "retries_total", **job5, error_kind="throttled") == 1
    assert total(samples, "retries_total") == 1
    # A local job is a placement, never a provider attempt.
    local_placed = {"job_id": "0", "ran_on": "local", "reason": "policy"}
    assert value(samples, "placements_total", **local_placed) == len(local)
    assert not any(
        labels and ("job_id", "0") in labels
        for (name, labels) in samples
        if name != "blueprint_faas_placements_total"
    )

    ledger = recent_invocations(redis.Redis.from_url(redis_url), 100)
    assert len(ledger) == faas_attempts
    # Newest first in append order (stream ids): attempts timestamped in different pool
    # processes may reach Redis in another order than their timestamps.
    appended = [tuple(map(int, str(r.entry_id).split("-"))) for r in ledger]
    assert appended == sorted(appended, reverse=True)
    by_job = Counter((r.job_id, r.ok, r.error_kind) for r in ledger)
    assert by_job == {
        (1, True, None): 5,
        (6, False, "function_error"): 2,
        (5, False, "throttled"): 1,
        (5, True, None): 1,
    }
    job1_entries = [r for r in ledger if r.job_id == 1]
    assert all(r.provider == "custom" and r.memory_mb == MEMORY_MB for r in job1_entries)
    assert all(r.cost_usd is not None and r.cost_usd > 0 for r in job1_entries)
    assert math.isclose(sum(r.cost_usd or 0 for r in job1_entries), cost, rel_tol=1e-9)
    assert sorted(r.total_ms or 0 for r in job1_entries) == sorted(
        r.metrics.total_ms  # type: ignore[union-attr]
        for r in square_results
    )
    assert Counter(r.cold_start for r in job1_entries) == Counter(
        r.metrics.cold_start  # type: ignore[union-attr]
        for r in square_results
    )


def test_the_ledger_round_trips_records_newest_first(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    first = InvocationRecord(ts=1.5, job_id=3, provider="aws", ok=True, total_ms=12.5)
    second = InvocationRecord(
        ts=2.5,
        job_id=4,
        provider="gcp",
        ok=False,
        error_kind="timeout",
        memory_mb=256,
        cold_start=True,
        cost_usd=0.000002,
    )

    ids = [append_invocation(client, first), append_invocation(client, second)]
    read = recent_invocations(client, 10)

    assert [r.entry_id for r in read] == ids[::-1]
    assert read[0] == dataclasses.replace(second, entry_id=ids[1])
    assert read[1] == dataclasses.replace(first, entry_id=ids[0])
    assert (read[1].total_ms, read[1].execution_ms, read[1].cost_usd) == (12.5, None, None)
    assert recent_invocations(client, 1) == read[:1]
    assert client.keys("*") == [INVOCATION_LEDGER_KEY.encode()]


def test_an_append_trims_the_ledger_to_its_cap(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    with client.pipeline(transaction=False) as pipe:  # a ledger already past its cap
        for n in range(LEDGER_MAXLEN + 1_000):
            pipe.xadd(INVOCATION_LEDGER_KEY, {"n": n})
        pipe.execute()
    append_invocation(client, InvocationRecord(ts=1.0, job_id=1, provider="aws", ok=True))
    # Trimming is approximate (whole stream nodes of 100 entries): near the cap, not above it.
    assert LEDGER_MAXLEN <= client.xlen(INVOCATION_LEDGER_KEY) < LEDGER_MAXLEN + 100


def test_results_of_local_jobs_leave_no_trace(
    blueprint: Blueprint, start_worker: StartWorker, redis_url: str
) -> None:
    start_worker(pool="threads")
    results: list[JobResult] = run_calls(blueprint, [JobCall(0, u64(5))])

    assert results[0].ok and results[0].ran_on == "local"
    assert recent_invocations(redis.Redis.from_url(redis_url), 10) == []


def test_a_local_job_asking_for_a_retry_is_retried_without_an_observer_error(
    settings: Settings, start_worker: StartWorker, redis_url: str
) -> None:
    worker = start_worker(pool="threads", app="tests.workers.retry_app")
    call = JobCall(retry_app.BUSY_ONCE_JOB, b"hi")
    (result,) = run_calls(retry_app.build_app().with_settings(settings), [call])
    # Celery logs the retry after the retry observer ran: its line means the observer is done.
    wait_until(lambda: f"[{call.call_id}] retry:" in worker.output(), 10, "the retry log line")

    assert result.ok and result.body == b"hi" and result.attempts == 2
    assert result.ran_on == "local"
    output = worker.output()
    assert "observer failed" not in output and "Traceback" not in output
    assert recent_invocations(redis.Redis.from_url(redis_url), 10) == []


def test_each_attempt_is_priced_in_its_executors_region(
    start_worker: StartWorker, settings: Settings, redis_url: str
) -> None:
    start_worker(pool="threads", app="tests.workers.regions_app")
    app = regions_app.build_app().with_settings(settings)
    calls = [JobCall(job_id, b"same work") for job_id in regions_app.REGIONS]

    results = run_calls(app, calls)

    assert all(result.ok and result.ran_on == "aws" for result in results)
    client = redis.Redis.from_url(redis_url)
    ledger = wait_until(
        lambda: (found := recent_invocations(client, 10)) and len(found) == 2 and found,
        10,
        "both attempts in the ledger",
    )
    by_job = {record.job_id: record for record in ledger}
    for result in results:
        record = by_job[result.job_id]
        region = regions_app.REGIONS[result.job_id]
        assert result.metrics is not None
        expected = estimate_invocation_cost(
            "aws", result.metrics, memory_mb=regions_app.MEMORY_MB, region=region
        )
        assert record.region == region
        assert record.cost_usd is not None
        assert math.isclose(record.cost_usd, expected.total_usd, rel_tol=1e-9)
    standard = by_job[regions_app.STANDARD_REGION_JOB].cost_usd
    dearer = by_job[regions_app.DEARER_REGION_JOB].cost_usd
    assert standard is not None and dearer is not None and dearer > standard


def test_a_worker_removes_the_metrics_directory_it_made_when_it_stops(
    start_worker: StartWorker, priced_settings: Settings, tmp_path: Path
) -> None:
    temp = tmp_path / "temp"
    temp.mkdir()
    env = {"TMPDIR": str(temp), METRICS_MULTIPROC_DIR_ENV: ""}
    worker = start_worker(
        pool="prefork", concurrency=1, worker_settings=priced_settings, extra_env=env
    )
    made = wait_until(
        lambda: list(temp.glob("blueprint-faas-metrics-*")), 10, "the worker's metrics directory"
    )
    assert len(made) == 1

    worker.stop()

    assert worker.process.returncode == 0
    assert list(temp.iterdir()) == []
