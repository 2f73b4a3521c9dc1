"""The metrics exporter adds up what several real worker processes recorded.

Recording runs in spawned child processes sharing one multiprocess directory, as the children
of a prefork worker do; the test process only serves and scrapes the real HTTP endpoint.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from dispatcher.keys import METRICS_MULTIPROC_DIR_ENV
from providers.base import FaasMetrics
from providers.errors import ErrorKind
from providers.pricing import estimate_invocation_cost
from workers.metrics import (
    MetricsServer,
    mark_process_dead,
    prepare_multiproc_dir,
    record_invocation,
    record_retry,
    record_throttle,
    start_metrics_server,
)

pytestmark = pytest.mark.integration

_REPO_ROOT = Path(__file__).resolve().parents[2]

_Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@dataclass(frozen=True)
class _Call:
    """One record_invocation call, as a child process makes it."""

    job_id: int
    provider: str
    outcome: str
    error_kind: ErrorKind | None = None
    metrics: FaasMetrics | None = None
    memory_mb: int | None = None
    region: str | None = None


# Process A: three billed Lambda calls (one cold), one throttled call, one retry.
_CALLS_A = (
    _Call(1, "aws", "ok", metrics=FaasMetrics(120, 95, True, 60, 95), memory_mb=128),
    _Call(1, "aws", "ok", metrics=FaasMetrics(40, 12.5, False, 60, 13), memory_mb=128),
    _Call(1, "aws", "ok", metrics=FaasMetrics(900, 850, False, 61, 850), memory_mb=128),
    _Call(1, "aws", "error", ErrorKind.THROTTLED),
)
# Process B: GCP calls without a billed figure, a function error, and Lambda again.
_CALLS_B = (
    _Call(2, "gcp", "ok", metrics=FaasMetrics(310, 250), memory_mb=256, region="europe-west3"),
    _Call(2, "gcp", "ok", metrics=FaasMetrics(0.004 * 1000), memory_mb=256),
    _Call(
        2,
        "gcp",
        "error",
        ErrorKind.FUNCTION_ERROR,
        metrics=FaasMetrics(200_000, 199_000),
        memory_mb=256,
    ),
    _Call(1, "aws", "ok", metrics=FaasMetrics(75, 70, True, 64, 70), memory_mb=128),
)


def _record_in_child(directory: str, calls: tuple[_Call, ...], retries: int) -> None:
    """Runs in a spawned process: record like a prefork child would."""
    os.environ[METRICS_MULTIPROC_DIR_ENV] = directory
    for call in calls:
        record_invocation(
            call.job_id,
            call.provider,
            outcome=call.outcome,
            error_kind=call.error_kind,
            metrics=call.metrics,
            memory_mb=call.memory_mb,
            region=call.region,
        )
    for _ in range(retries):
        record_retry(1, "aws", ErrorKind.THROTTLED)
    record_throttle(1, "aws")


def _run_spawned_child(directory: Path, calls: tuple[_Call, ...], retries: int) -> int:
    child = multiprocessing.get_context("spawn").Process(
        target=_record_in_child, args=(str(directory), calls, retries)
    )
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0, f"recording child failed with exit code {child.exitcode}"
    assert child.pid is not None
    return child.pid


def _run_late_child(directory: Path, calls: str, retries: int) -> int:
    """A process that imported prometheus_client before the variable was set, as a worker
    whose app module imports the metrics before its parent prepares the directory."""
    env = {k: v for k, v in os.environ.items() if k != METRICS_MULTIPROC_DIR_ENV}
    script = (
        "import sys\n"
        "from tests.workers import test_metrics as t\n"
        f"t._record_in_child(sys.argv[1], t.{calls}, {retries})\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script, str(directory)], env=env, cwd=_REPO_ROOT
    )
    assert child.wait(timeout=60) == 0, "recording child failed"
    return child.pid


def _scrape(server: MetricsServer) -> _Samples:
    reply = httpx.get(f"http://127.0.0.1:{server.port}/metrics", timeout=10)
    reply.raise_for_status()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(reply.text)
        for sample in family.samples
    }


def _value(samples: _Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture(scope="module")
def two_processes_recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Samples]:
    with pytest.MonkeyPatch.context() as patch:
        # setenv first so that the variable prepare_multiproc_dir sets is restored after.
        patch.setenv(METRICS_MULTIPROC_DIR_ENV, "restored-after-the-test")
        directory = prepare_multiproc_dir(tmp_path_factory.mktemp("metrics"))
        pids = [
            _run_spawned_child(directory, _CALLS_A, 2),
            _run_late_child(directory, "_CALLS_B", 1),
        ]
        for pid in pids:
            mark_process_dead(pid)
        server = start_metrics_server(0, directory, addr="127.0.0.1")
        try:
            yield _scrape(server)
        finally:
            server.close()


def test_invocations_from_both_processes_add_up(two_processes_recorded: _Samples) -> None:
    samples = two_processes_recorded
    total = "blueprint_faas_invocations_total"

    assert _value(samples, total, job_id="1", provider="aws") == 5
    assert _value(samples, total, job_id="2", provider="gcp") == 3


def test_results_are_counted_by_outcome_and_error_kind(two_processes_recorded: _Samples) -> None:
    samples = two_processes_recorded
    results = "blueprint_faas_results_total"

    assert (
        _value(samples, results, job_id="1", provider="aws", outcome="ok", error_kind="none") == 4
    )
    assert (
        _value(
            samples, results, job_id="1", provider="aws", outcome="error", error_kind="throttled"
        )
        == 1
    )
    assert (
        _value(
            samples,
            results,
            job_id="2",
            provider="gcp",
            outcome="error",
            error_kind="function_error",
        )
        == 1
    )


def test_throttles_retries_and_cold_starts_add_up(two_processes_recorded: _Samples) -> None:
    samples = two_processes_recorded
    aws = {"job_id": "1", "provider": "aws"}

    # One throttled invocation, plus one record_throttle per process.
    assert _value(samples, "blueprint_faas_throttles_total", **aws) == 3
    assert _value(samples, "blueprint_faas_retries_total", **aws, error_kind="throttled") == 2 + 1
    assert _value(samples, "blueprint_faas_cold_starts_total", **aws) == 2


def test_latency_histogram_counts_and_sums_every_measured_call(
    two_processes_recorded: _Samples,
) -> None:
    samples = two_processes_recorded
    name = "blueprint_faas_invoke_duration_seconds"
    measured = [c for c in _CALLS_A + _CALLS_B if c.metrics is not None]

    for job_id, provider in (("1", "aws"), ("2", "gcp")):
        mine = [c for c in measured if c.provider == provider]
        labels = {"job_id": job_id, "provider": provider}
        assert _value(samples, f"{name}_count", **labels) == len(mine)
        assert _value(samples, f"{name}_sum", **labels) == pytest.approx(
            sum(c.metrics.total_ms / 1000 for c in mine if c.metrics is not None)
        )
    gcp = {"job_id": "2", "provider": "gcp"}
    assert _value(samples, f"{name}_bucket", **gcp, le="0.005") == 1
    assert _value(samples, f"{name}_bucket", **gcp, le="120.0") == 2
    assert _value(samples, f"{name}_bucket", **gcp, le="300.0") == 3


def test_cost_and_billed_duration_are_the_sum_of_per_invocation_estimates(
    two_processes_recorded: _Samples,
) -> None:
    samples = two_processes_recorded

    for job_id, provider in (("1", "aws"), ("2", "gcp")):
        estimates = [
            estimate_invocation_cost(provider, c.metrics, memory_mb=c.memory_mb, region=c.region)
            for c in _CALLS_A + _CALLS_B
            if c.provider == provider and c.metrics is not None and c.memory_mb is not None
        ]
        labels = {"job_id": job_id, "provider": provider}
        assert _value(samples, "blueprint_faas_estimated_cost_usd_total", **labels) == (
            pytest.approx(sum(e.total_usd for e in estimates), rel=1e-9)
        )
        assert _value(samples, "blueprint_faas_billed_duration_seconds_total", **labels) == (
            pytest.approx(sum(e.billed_ms for e in estimates) / 1000)
        )
    # Lambda reported its billed milliseconds: 95 + 13 + 850 + 70.
    assert _value(
        samples, "blueprint_faas_billed_duration_seconds_total", job_id="1", provider="aws"
    ) == pytest.approx(1.028)


def test_preparing_the_directory_removes_files_of_a_previous_run(tmp_path: Path) -> None:
    directory = tmp_path / "metrics"
    directory.mkdir()
    (directory / "counter_12345.db").write_bytes(b"stale")
    (directory / "notes.txt").write_text("not ours")
    previous = os.environ.get(METRICS_MULTIPROC_DIR_ENV)
    try:
        assert prepare_multiproc_dir(directory) == directory
        assert os.environ[METRICS_MULTIPROC_DIR_ENV] == str(directory)
    finally:
        if previous is None:
            os.environ.pop(METRICS_MULTIPROC_DIR_ENV, None)
        else:
            os.environ[METRICS_MULTIPROC_DIR_ENV] = previous

    assert sorted(p.name for p in directory.iterdir()) == ["notes.txt"]


@pytest.fixture
def single_process(monkeypatch: pytest.MonkeyPatch) -> Iterator[MetricsServer]:
    monkeypatch.delenv(METRICS_MULTIPROC_DIR_ENV, raising=False)
    server = start_metrics_server(0, addr="127.0.0.1")
    try:
        yield server
    finally:
        server.close()


def test_a_failing_observer_is_logged_and_never_reaches_the_caller(
    single_process: MetricsServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="blueprint_faas.workers.metrics")

    record_invocation(-1, "aws", outcome="ok")
    record_invocation(3, "aws", outcome="maybe")
    record_retry(2**40, "aws", ErrorKind.TIMEOUT)
    # An unpriced region fails the cost estimate after the counts are taken.
    record_invocation(
        4, "gcp", outcome="ok", metrics=FaasMetrics(100), memory_mb=256, region="mars-central1"
    )

    assert len(caplog.records) == 4
    assert all("the caller goes on" in r.getMessage() for r in caplog.records)
    samples = _scrape(single_process)
    gcp = {"job_id": "4", "provider": "gcp"}
    assert _value(samples, "blueprint_faas_invocations_total", **gcp) == 1
    assert _value(samples, "blueprint_faas_invoke_duration_seconds_count", **gcp) == 1
    assert _value(samples, "blueprint_faas_estimated_cost_usd_total", **gcp) == 0
    assert _value(samples, "blueprint_faas_invocations_total", job_id="3", provider="aws") == 0


def test_a_provider_without_prices_is_counted_without_a_cost(
    single_process: MetricsServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="blueprint_faas.workers.metrics")

    record_invocation(5, "echo", outcome="ok", metrics=FaasMetrics(10, billed_ms=7), memory_mb=128)

    assert caplog.records == []
    samples = _scrape(single_process)
    echo = {"job_id": "5", "provider": "echo"}
    assert _value(samples, "blueprint_faas_invocations_total", **echo) == 1
    assert _value(samples, "blueprint_faas_billed_duration_seconds_total", **echo) == 0.007


def test_port_zero_binds_a_free_port_and_close_frees_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(METRICS_MULTIPROC_DIR_ENV, raising=False)
    server = start_metrics_server(0, addr="127.0.0.1")
    port = server.port
    assert httpx.get(f"http://127.0.0.1:{port}/metrics").status_code == 200

    server.close()

    again = start_metrics_server(port, addr="127.0.0.1")
    again.close()
    assert again.port == port
