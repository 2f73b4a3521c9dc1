"""The invocation observer: every FaaS invocation attempt goes to the metrics and the ledger.

It hooks into Celery signals of the execute task, so the task itself records nothing:

- ``task_success``: the call's JobResult is one placement (where it ran and why); when it
  ran on a provider (``ran_on`` is not local, and the breaker did not stop it) it is also
  one attempt: ok or its error kind, its metrics, the job's configured memory;
- ``task_retry``: a retryable provider error is one failed attempt, and one retry; a call
  sent back for want of a concurrency lease is one budget requeue;
- ``task_failure`` of a warm or health task: a throttled control call counts as a throttle.
- ``calls_succeeded`` and ``call_retried`` (:mod:`workers.signals`): the same two events for
  the calls of a batch message, which Celery's signals see as one task; the ledger entries
  of the results stored together are appended in one round trip.

Each attempt is counted by :mod:`workers.metrics` and appended to :mod:`dispatcher.records` on
the result backend's Redis. An observer that fails is logged; it never fails the task.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from celery.signals import task_failure, task_retry, task_success

from dispatcher.jobs import LOCAL
from dispatcher.keys import EXECUTE_TASK, HEALTH_TASK, WARM_TASK
from dispatcher.records import InvocationRecord, append_invocation, append_invocations
from providers.base import FaasMetrics
from providers.errors import ErrorKind, FaasError
from providers.pricing import (
    DEFAULT_PRICE_BOOK,
    PriceBook,
    PriceList,
    estimate_invocation_cost,
    with_custom_prices,
)
from workers import metrics
from workers.guards import NoCapacity
from workers.signals import call_retried, calls_succeeded

if TYPE_CHECKING:
    from celery import Task

    from dispatcher.settings import Settings

__all__ = ["Attempt", "install", "price_book", "record_attempt", "record_attempts"]

logger = logging.getLogger("blueprint_faas.workers.observe")

_CONTROL_TASKS = frozenset({WARM_TASK, HEALTH_TASK})


@dataclass(frozen=True, slots=True)
class Attempt:
    """One provider invocation attempt, as the observer hands it to metrics and the ledger."""

    job_id: int
    provider: str
    ok: bool
    error_kind: str | None = None
    metrics: FaasMetrics | None = None
    memory_mb: float | None = None
    #: The executor's region, which prices the attempt (None: the provider's default).
    region: str | None = None


def price_book(settings: Settings) -> PriceBook:
    """The default price book, with the custom platform priced by the settings' knobs."""
    per_gb_s = settings.custom_price_per_gb_second_usd
    per_million = settings.custom_price_per_million_requests_usd
    if not per_gb_s and not per_million:
        return DEFAULT_PRICE_BOOK
    return with_custom_prices(
        PriceList(per_gb_second_usd=per_gb_s, per_million_requests_usd=per_million)
    )


def record_attempt(
    attempt: Attempt, redis_client: Any | None, prices: PriceBook = DEFAULT_PRICE_BOOK
) -> None:
    """Count ``attempt`` in the metrics and append it to the ledger. Never raises."""
    record_attempts([attempt], redis_client, prices)


def record_attempts(
    attempts: list[Attempt], redis_client: Any | None, prices: PriceBook = DEFAULT_PRICE_BOOK
) -> None:
    """:func:`record_attempt` for several attempts, the ledger in one round trip."""
    for attempt in attempts:
        metrics.record_invocation(
            attempt.job_id,
            attempt.provider,
            outcome=metrics.Outcome.OK if attempt.ok else metrics.Outcome.ERROR,
            error_kind=attempt.error_kind,
            metrics=attempt.metrics,
            memory_mb=attempt.memory_mb,
            region=attempt.region,
            prices=prices,
        )
    if redis_client is None or not attempts:
        return
    try:
        records = [_ledger_record(attempt, prices) for attempt in attempts]
        if len(records) == 1:
            append_invocation(redis_client, records[0])
        else:
            append_invocations(redis_client, records)
    except Exception:
        logger.exception("could not append %d invocations to the ledger", len(attempts))


def install() -> None:
    """Connect the observer to the execute and control tasks' signals (idempotent)."""
    task_success.connect(_on_success, weak=False, dispatch_uid="blueprint-observe-success")
    task_retry.connect(_on_retry, weak=False, dispatch_uid="blueprint-observe-retry")
    task_failure.connect(_on_failure, weak=False, dispatch_uid="blueprint-observe-failure")
    calls_succeeded.connect(_on_calls_succeeded, weak=False, dispatch_uid="blueprint-observe-calls")
    call_retried.connect(_on_call_retry, weak=False, dispatch_uid="blueprint-observe-call-retry")


# -- signal handlers: each one guarded, as an observer must be -------------------------------


def _on_success(sender: Task | None = None, result: Any = None, **_: Any) -> None:
    if sender is None or sender.name != EXECUTE_TASK:
        return
    _on_calls_succeeded(sender, results=[result])


def _on_calls_succeeded(sender: Task | None = None, results: Any = (), **_: Any) -> None:
    if sender is None:
        return
    try:
        attempts = [_attempt_of(sender, result) for result in results]
        found = [attempt for attempt in attempts if attempt is not None]
        if found:
            record_attempts(found, _redis(sender), _prices(sender))
    except Exception:
        logger.exception("the invocation observer failed; the task goes on")


def _attempt_of(task: Task, result: object) -> Attempt | None:
    # A stored JobResult wire dict is one placement; and one provider attempt unless it ran
    # locally or the breaker stopped it (None then).
    if not isinstance(result, Mapping):
        return None
    ran_on = result.get("ran_on", LOCAL)
    job_id = int(result["job_id"])
    metrics.record_placement(job_id, str(ran_on), str(result.get("placement_reason")))
    error = result.get("error")
    if ran_on == LOCAL or (
        isinstance(error, Mapping) and error.get("kind") == ErrorKind.CIRCUIT_OPEN
    ):
        return None
    raw_metrics = result.get("metrics")
    return Attempt(
        job_id,
        str(result["ran_on"]),
        ok=bool(result.get("ok")),
        error_kind=str(error["kind"]) if isinstance(error, Mapping) else None,
        metrics=FaasMetrics(**raw_metrics) if isinstance(raw_metrics, Mapping) else None,
        memory_mb=_memory_mb(task, job_id),
        region=_region(task, job_id),
    )


def _on_retry(
    sender: Task | None = None, request: Any = None, reason: Any = None, **_: Any
) -> None:
    if sender is None or sender.name != EXECUTE_TASK:
        return
    try:
        _record_retry(sender, int(request.args[0]["job_id"]), getattr(reason, "exc", reason))
    except Exception:
        logger.exception("the retry observer failed; the task goes on")


def _on_call_retry(
    sender: Task | None = None, job_id: int | None = None, reason: Any = None, **_: Any
) -> None:
    if sender is None or job_id is None:
        return
    try:
        _record_retry(sender, job_id, reason)
    except Exception:
        logger.exception("the retry observer failed; the task goes on")


def _record_retry(task: Task, job_id: int, error: object) -> None:
    if isinstance(error, NoCapacity):
        metrics.record_budget_requeue(error.scope)
        return
    if not isinstance(error, FaasError):
        return
    registry = task.blueprint.registry
    if job_id not in registry:
        return  # a local handler asked for the retry: no provider attempt to count
    provider = error.provider or registry.get(job_id).provider_name
    region = registry.get(job_id).region
    attempt = Attempt(job_id, provider, ok=False, error_kind=str(error.kind), region=region)
    record_attempt(attempt, _redis(task), _prices(task))
    metrics.record_retry(job_id, provider, error.kind)


def _on_failure(
    sender: Task | None = None, exception: BaseException | None = None, args: Any = None, **_: Any
) -> None:
    if sender is None or sender.name not in _CONTROL_TASKS:
        return
    if isinstance(exception, FaasError) and exception.kind == ErrorKind.THROTTLED:
        try:
            job_id = int(args[0])
            provider = exception.provider or sender.blueprint.registry.get(job_id).provider_name
            metrics.record_throttle(job_id, provider)
        except Exception:
            logger.exception("the control-task observer failed")


# -- helpers ----------------------------------------------------------------------------------


def _memory_mb(task: Task, job_id: int) -> float | None:
    registry = task.blueprint.registry
    if job_id not in registry:
        return None
    return float(registry.get(job_id).job_config(job_id).memory_mb)


def _region(task: Task, job_id: int) -> str | None:
    registry = task.blueprint.registry
    return registry.get(job_id).region if job_id in registry else None


def _redis(task: Task) -> Any | None:
    # The result backend's client: a connection pool per process (and per thread) already.
    return getattr(task.backend, "client", None)


_price_books: dict[tuple[float, float], PriceBook] = {}


def _prices(task: Task) -> PriceBook:
    settings = task.blueprint.settings
    key = (settings.custom_price_per_gb_second_usd, settings.custom_price_per_million_requests_usd)
    book = _price_books.get(key)
    if book is None:
        book = _price_books[key] = price_book(settings)
    return book


def _ledger_record(attempt: Attempt, prices: PriceBook) -> InvocationRecord:
    figures = attempt.metrics
    cost_usd = None
    billed_ms = None if figures is None else figures.billed_ms
    if figures is not None and attempt.memory_mb is not None and attempt.provider in prices:
        try:
            estimate = estimate_invocation_cost(
                attempt.provider,
                figures,
                memory_mb=attempt.memory_mb,
                region=attempt.region,
                book=prices,
            )
        except (LookupError, ValueError) as error:
            logger.warning("no cost estimate for job %s: %s", attempt.job_id, error)
        else:
            # The duration priced, as the billed-duration metric counts it.
            cost_usd, billed_ms = estimate.total_usd, float(estimate.billed_ms)
    return InvocationRecord(
        ts=time.time(),
        job_id=attempt.job_id,
        provider=attempt.provider,
        ok=attempt.ok,
        error_kind=attempt.error_kind,
        total_ms=None if figures is None else figures.total_ms,
        execution_ms=None if figures is None else figures.execution_ms,
        billed_ms=billed_ms,
        memory_mb=attempt.memory_mb,
        cold_start=None if figures is None else figures.cold_start,
        cost_usd=cost_usd,
        region=attempt.region,
    )
