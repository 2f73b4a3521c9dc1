"""Prometheus metrics of FaaS invocations: what Flower does not show.

Flower sees tasks; these count what happened at the provider, labelled by job id and provider:
invocations, results by outcome and error kind, throttles, retries, cold starts, invoke
latency, billed duration and estimated cost (from :mod:`providers.pricing`); and where calls
ran and why (placements, :mod:`dispatcher.placement`), budget waits that ran out, and each
provider scope's circuit breaker state.

Process model. A prefork worker records in several child processes, so the metrics use
prometheus_client's multiprocess mode: each process writes its own files in one shared
directory, and one exporter per worker reads and adds them all up. At worker start the parent
process calls::

    prepare_multiproc_dir(path)          # creates the directory, removes old files
    start_metrics_server(port)           # one HTTP exporter for the whole worker

and when a child process exits, ``mark_process_dead(pid)``. The record functions are meant to
be one line each in the task or a Celery signal handler, and they never raise: an observer
that fails is logged and the task goes on. Without ``PROMETHEUS_MULTIPROC_DIR`` the metrics
live in this process only, which suits a solo or threads pool but not prefork.

Two worker instances on one host need a directory and a port each: preparing a directory
wipes the files of whoever else used it. Do not set ``PROMETHEUS_MULTIPROC_DIR`` for Flower,
which creates its own metrics at import.
"""

from __future__ import annotations

import functools
import logging
import os
import tempfile
import threading
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, ParamSpec

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    multiprocess,
    start_http_server,
    values,
)

from dispatcher.keys import METRICS_MULTIPROC_DIR_ENV, METRICS_PORT_DEFAULT, METRICS_PREFIX
from providers.base import check_job_id
from providers.errors import ErrorKind
from providers.pricing import DEFAULT_PRICE_BOOK, Arch, PriceBook, estimate_invocation_cost

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from providers.base import FaasMetrics

__all__ = [
    "DEFAULT_METRICS_ADDR",
    "LATENCY_BUCKETS_S",
    "MetricsServer",
    "Outcome",
    "mark_process_dead",
    "prepare_multiproc_dir",
    "record_budget_requeue",
    "record_invocation",
    "record_placement",
    "record_retry",
    "record_throttle",
    "set_breaker_state",
    "start_metrics_server",
]

logger = logging.getLogger("blueprint_faas.workers.metrics")

#: Invoke latency buckets: 5 ms (a warm call next door) to 5 min (a long FaaS job).
LATENCY_BUCKETS_S = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
)
DEFAULT_METRICS_ADDR = "0.0.0.0"

_LABELS = ("job_id", "provider")
#: The error-kind label of a result that is not an error.
_NO_ERROR_KIND = "none"
_MS_PER_S = 1000

_P = ParamSpec("_P")


class Outcome(StrEnum):
    """How an invocation ended, as the ``outcome`` label spells it."""

    OK = "ok"
    ERROR = "error"


class MetricsServer:
    """A running exporter; :meth:`close` stops it and frees the port."""

    def __init__(self, server: WSGIServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread
        self.port: int = server.server_port

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __repr__(self) -> str:
        return f"MetricsServer(port={self.port})"


class _Metrics:
    """Every metric we export, created once per process on first use."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        def name(suffix: str) -> str:
            return f"{METRICS_PREFIX}{suffix}"

        self.invocations = Counter(
            name("invocations"), "Provider invocations.", _LABELS, registry=registry
        )
        self.results = Counter(
            name("results"),
            "Invocation results by outcome and error kind.",
            (*_LABELS, "outcome", "error_kind"),
            registry=registry,
        )
        self.throttles = Counter(
            name("throttles"), "Throttled (429) provider calls.", _LABELS, registry=registry
        )
        self.retries = Counter(
            name("retries"), "Retries scheduled.", (*_LABELS, "error_kind"), registry=registry
        )
        self.cold_starts = Counter(
            name("cold_starts"), "Invocations the provider ran cold.", _LABELS, registry=registry
        )
        self.latency = Histogram(
            name("invoke_duration_seconds"),
            "Invoke latency measured by the worker.",
            _LABELS,
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.billed = Counter(
            name("billed_duration_seconds"),
            "Duration the provider bills.",
            _LABELS,
            registry=registry,
        )
        self.cost = Counter(
            name("estimated_cost_usd"),
            "Estimated cost at list price (providers.pricing).",
            _LABELS,
            registry=registry,
        )
        self.placements = Counter(
            name("placements"),
            "Calls answered, by where they ran and why (policy, overflow, fallback).",
            ("job_id", "ran_on", "reason"),
            registry=registry,
        )
        self.budget_requeues = Counter(
            name("budget_requeues"),
            "Calls sent back to their queue: no concurrency lease came free in time.",
            ("scope",),
            registry=registry,
        )
        # The latest state any process of the worker saw: every process reads the same breaker.
        self.breaker = Gauge(
            name("breaker_state"),
            "Circuit breaker of a provider scope: 0 closed, 1 half-open, 2 open.",
            ("scope",),
            registry=registry,
            multiprocess_mode="mostrecent",
        )


#: Holds the metrics when no multiprocess directory is configured.
_LOCAL_REGISTRY = CollectorRegistry()
_metrics_lock = threading.Lock()
_metrics: _Metrics | None = None


def prepare_multiproc_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """Create the shared metrics directory, empty it, and point this process at it.

    Call it in the worker's parent process before the pool starts, so that the children
    inherit the variable. Files of a previous run are removed: left there, they would be
    added to the new run's counts.

    Parameters
    ----------
    path:
        The directory; None uses ``PROMETHEUS_MULTIPROC_DIR`` when set, else a new
        temporary directory.

    Returns
    -------
    Path
        The directory, now also in ``os.environ["PROMETHEUS_MULTIPROC_DIR"]``.

    Raises
    ------
    OSError
        The directory cannot be created or emptied.
    """
    if path is None:
        configured = os.environ.get(METRICS_MULTIPROC_DIR_ENV)
        path = configured or tempfile.mkdtemp(prefix="blueprint-faas-metrics-")
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()
    os.environ[METRICS_MULTIPROC_DIR_ENV] = str(directory)
    return directory


def start_metrics_server(
    port: int = METRICS_PORT_DEFAULT,
    multiproc_dir: str | os.PathLike[str] | None = None,
    *,
    addr: str = DEFAULT_METRICS_ADDR,
) -> MetricsServer:
    """Serve the metrics in Prometheus text format on ``addr:port`` from a daemon thread.

    Start one per worker, in the parent process; port 0 binds a free port (read it from
    the returned server's ``port``). Not calling it is how the exporter is disabled.

    Parameters
    ----------
    multiproc_dir:
        Directory whose files are added up; None uses ``PROMETHEUS_MULTIPROC_DIR`` when set,
        else serves this process's own metrics.

    Raises
    ------
    OSError
        The port cannot be bound.
    ValueError
        ``multiproc_dir`` is not a directory.
    """
    directory = multiproc_dir or os.environ.get(METRICS_MULTIPROC_DIR_ENV)
    if directory:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(directory))
    else:
        registry = _LOCAL_REGISTRY
    server, thread = start_http_server(port, addr=addr, registry=registry)
    exporter = MetricsServer(server, thread)
    logger.info("metrics exporter listening addr=%s port=%s", addr, exporter.port)
    return exporter


def _observer(func: Callable[_P, None]) -> Callable[_P, None]:
    """Log and swallow any failure of ``func``: metrics must never fail a task."""

    @functools.wraps(func)
    def guarded(*args: _P.args, **kwargs: _P.kwargs) -> None:
        try:
            func(*args, **kwargs)
        except Exception:
            logger.exception("metrics observer %s failed; the caller goes on", func.__name__)

    return guarded


@_observer
def mark_process_dead(pid: int | None = None) -> None:
    """Tell the multiprocess collector that process ``pid`` (default: this one) has exited.

    Counters of the dead process stay counted; only its live gauges go. Does nothing
    outside multiprocess mode.
    """
    directory = os.environ.get(METRICS_MULTIPROC_DIR_ENV)
    if directory:
        multiprocess.mark_process_dead(os.getpid() if pid is None else pid, directory)


@_observer
def record_invocation(
    job_id: int,
    provider: str,
    *,
    outcome: Outcome | str,
    error_kind: ErrorKind | str | None = None,
    metrics: FaasMetrics | None = None,
    memory_mb: float | None = None,
    region: str | None = None,
    arch: Arch = Arch.X86_64,
    prices: PriceBook = DEFAULT_PRICE_BOOK,
) -> None:
    """Count one provider call, each attempt included, and what it cost.

    A throttled result (``error_kind`` throttled) is also counted as a throttle, so a task
    needs no second call for it. Latency, cold start, billed duration and cost need
    ``metrics``; cost also needs ``memory_mb`` (the configured memory) and a provider that
    ``prices`` knows. The billed duration counted is the one the cost was estimated on, else
    the provider's own ``billed_ms``. Never raises.
    """
    labels = (str(check_job_id(job_id)), provider)
    outcome = Outcome(outcome)
    kind = _NO_ERROR_KIND if error_kind is None else str(error_kind)
    recorded = _get_metrics()
    recorded.invocations.labels(*labels).inc()
    recorded.results.labels(*labels, outcome.value, kind).inc()
    if kind == ErrorKind.THROTTLED:
        recorded.throttles.labels(*labels).inc()
    if metrics is None:
        return
    recorded.latency.labels(*labels).observe(metrics.total_ms / _MS_PER_S)
    if metrics.cold_start:
        recorded.cold_starts.labels(*labels).inc()
    billed_ms = metrics.billed_ms
    if memory_mb is not None and provider in prices:
        estimate = estimate_invocation_cost(
            provider, metrics, memory_mb=memory_mb, region=region, arch=arch, book=prices
        )
        recorded.cost.labels(*labels).inc(estimate.total_usd)
        billed_ms = estimate.billed_ms
    if billed_ms is not None:
        recorded.billed.labels(*labels).inc(billed_ms / _MS_PER_S)


@_observer
def record_retry(job_id: int, provider: str, error_kind: ErrorKind | str) -> None:
    """Count a retry scheduled after an error of ``error_kind``. Never raises."""
    labels = (str(check_job_id(job_id)), provider)
    _get_metrics().retries.labels(*labels, str(error_kind)).inc()


@_observer
def record_placement(job_id: int, ran_on: str, reason: str) -> None:
    """Count one answered call: where it ran (local or a provider) and why. Never raises."""
    _get_metrics().placements.labels(str(check_job_id(job_id)), ran_on, reason).inc()


@_observer
def record_budget_requeue(scope: str) -> None:
    """Count a call put back on its queue for want of a concurrency lease. Never raises."""
    _get_metrics().budget_requeues.labels(scope).inc()


@_observer
def set_breaker_state(scope: str, value: int) -> None:
    """Export the state of ``scope``'s breaker as last seen (0, 1, 2). Never raises."""
    _get_metrics().breaker.labels(scope).set(value)


@_observer
def record_throttle(job_id: int, provider: str) -> None:
    """Count a throttle outside an invocation (deploy, warm, health). Never raises.

    A throttled invocation is already counted by :func:`record_invocation`.
    """
    labels = (str(check_job_id(job_id)), provider)
    _get_metrics().throttles.labels(*labels).inc()


def _get_metrics() -> _Metrics:
    global _metrics
    with _metrics_lock:
        if _metrics is None:
            _metrics = _Metrics(_recording_registry())
        return _metrics


def _recording_registry() -> CollectorRegistry | None:
    """Where this process's metrics live: files in the shared directory, or local memory."""
    if not os.environ.get(METRICS_MULTIPROC_DIR_ENV):
        return _LOCAL_REGISTRY
    # prometheus_client picks file-backed values when it is imported, from the variable; a
    # worker may have imported it before prepare_multiproc_dir set the variable, so pick
    # again. Metrics in multiprocess mode join no registry: the exporter reads the files.
    if not getattr(values.ValueClass, "_multiprocess", False):
        values.ValueClass = values.get_value_class()
    return None
