"""The execute task: run one JobCall locally or on its FaaS executor, exactly once per result.

The task is a short sequence of named steps: decode the call, skip it if its outcome is
already stored (announcing it again, never running it), run it on the side its queue says
(:func:`dispatcher.placement.route_of_queue`), then retry or store the result. A FaaS run goes
through the provider's shared budget and breaker (:mod:`workers.guards`): no lease in time
sends the call back to its queue; an open breaker answers ``circuit_open``, or runs the
local handler for a job placed on both sides (``fallback``). Every outcome the job can have,
failures included, is a *successful task* whose value is a JobResult wire dict: it is stored
once, and the runner gets it like any other result.

Beside it, the control tasks of FaaS jobs, which beat sends to the control queue: warm asks
the job's executor to start instances ahead of calls, health checks the function and stores
the outcome in Redis (:mod:`workers.health`). They run once (no retry: the next period sends
another), under a short time limit, and their messages expire so a stale one is dropped.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, ClassVar

from celery import Task
from celery.exceptions import Ignore, SoftTimeLimitExceeded

from dispatcher.errors import DecodeError, UnknownJob
from dispatcher.jobs import LOCAL, JobCall, JobError, JobResult
from dispatcher.keys import (
    EXECUTE_TASK,
    HEALTH_TASK,
    JOB_QUEUE_PREFIX,
    REQUEUES_HEADER,
    WARM_QUEUE,
    WARM_TASK,
)
from dispatcher.placement import Lane, PlacementReason, route_of_queue
from dispatcher.records import HealthStatus, store_health
from dispatcher.router import JobContext
from providers.errors import ErrorKind, FaasError
from workers.backoff import compute_backoff_s
from workers.guards import CircuitOpen, NoCapacity, ProviderGuards
from workers.idempotency import announce_stored, stored_outcome
from workers.redaction import summarized

if TYPE_CHECKING:
    from collections.abc import Callable

    from celery import Celery

    from dispatcher.app import Blueprint
    from dispatcher.settings import Settings

__all__ = ["CONTROL_HARD_LIMIT_EXTRA_S", "ControlTask", "ExecuteTask", "register_tasks"]

logger = logging.getLogger("blueprint_faas.workers")

#: The hard time limit of a control task is its soft limit plus this.
CONTROL_HARD_LIMIT_EXTRA_S = 5.0


class ExecuteTask(Task):  # type: ignore[misc]
    """Base of the execute task; ``blueprint`` is set when the task is registered."""

    blueprint: ClassVar[Blueprint]
    # Arguments are checked by the decode step, so a malformed message gets an error result
    # instead of a TypeError before the task body runs.
    typing = False
    # Wakes a gevent worker's consumer loop when a late ack frees a prefetch slot.
    Request = "workers._wake:WakingRequest"
    # No cap of Celery's own (its default is 3): _retry_or_give_up owns the cap, retry_max,
    # and past it stores the "gave up" result instead of letting Celery fail the task.
    max_retries = None
    _guards: ClassVar[ProviderGuards | None] = None

    @property
    def guards(self) -> ProviderGuards:
        """This process's provider breakers and budgets, made on first use (after a fork)."""
        cls = type(self)
        if cls._guards is None:
            cls._guards = ProviderGuards.for_settings(self.blueprint.settings)
        return cls._guards


class ControlTask(Task):  # type: ignore[misc]
    """Base of the warm and health tasks: run once, result not stored, message not re-run.

    A lost or failed control task is simply sent again at the next period, so it is acked
    early, never retried, and its result (a count or a status) is not kept.
    """

    blueprint: ClassVar[Blueprint]
    ignore_result = True
    acks_late = False
    max_retries = 0


class _Retryable(Exception):
    """Internal: the attempt failed in a way that may succeed later."""

    def __init__(self, error: FaasError, ran_on: str, reason: PlacementReason) -> None:
        super().__init__(error.message)
        self.error = error
        self.ran_on = ran_on
        self.reason = reason


def register_tasks(
    app: Celery, blueprint: Blueprint, *, time_limits_s: tuple[float, float]
) -> None:
    """Register the execute task and the control tasks (warm, health) of ``blueprint``."""
    soft_s, hard_s = time_limits_s
    app.task(
        name=EXECUTE_TASK,
        bind=True,
        base=ExecuteTask,
        blueprint=blueprint,
        soft_time_limit=soft_s,
        time_limit=hard_s,
    )(summarized(_execute))
    control_s = blueprint.settings.control_time_limit_s
    for name, run in ((WARM_TASK, _warm), (HEALTH_TASK, _health)):
        app.task(
            name=name,
            bind=True,
            base=ControlTask,
            blueprint=blueprint,
            queue=WARM_QUEUE,
            soft_time_limit=control_s,
            time_limit=control_s + CONTROL_HARD_LIMIT_EXTRA_S,
        )(run)


def _execute(task: ExecuteTask, *args: Any, **kwargs: Any) -> dict[str, Any]:
    call = _decode(task, args, kwargs)
    if isinstance(call, JobResult):
        return call.to_wire()
    if stored_outcome(task.backend, call.call_id) is not None:
        logger.info("call %s already has a result; not running it again", call.call_id)
        announce_stored(task.backend, call.call_id)
        raise Ignore()
    requeues = _requeues(task)
    attempt = task.request.retries - requeues + 1
    try:
        result = _run(task, call, attempt, _delivery_queue(task))
    except _Retryable as failure:
        return _retry_or_give_up(task, call, failure, attempt)
    except NoCapacity as waited:
        # Not an attempt: nothing was sent. Counted apart, so it never brings the call
        # closer to giving up.
        logger.info("call %s: %s; back to its queue", call.call_id, waited)
        raise task.retry(
            countdown=task.blueprint.settings.budget_requeue_s,
            exc=waited,
            headers={REQUEUES_HEADER: requeues + 1},
        ) from None
    return result.to_wire()


# -- the steps ------------------------------------------------------------------------------


def _decode(
    task: ExecuteTask, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> JobCall | JobResult:
    """The call in the message, or the error result of a message that holds none."""
    try:
        if len(args) != 1 or kwargs:
            raise DecodeError("an execute task takes exactly one JobCall wire dict", args)
        call = JobCall.from_wire(args[0])
    except DecodeError as error:
        stand_in = JobCall(job_id=_queue_job_id(task), call_id=task.request.id)
        logger.warning("malformed call %s: %s", task.request.id, error)
        return JobResult.failure(
            stand_in, JobError(kind=ErrorKind.MALFORMED_CALL, message=str(error))
        )
    if call.call_id != task.request.id:
        # The task id is the idempotency key; a call claiming another id is not trusted.
        message = f"call_id {call.call_id!r} differs from the task id {task.request.id!r}"
        stand_in = JobCall(job_id=call.job_id, call_id=task.request.id, metadata=call.metadata)
        return JobResult.failure(stand_in, JobError(kind=ErrorKind.MALFORMED_CALL, message=message))
    return call


def _run(task: ExecuteTask, call: JobCall, attempt: int, queue: str | None) -> JobResult:
    """Run the call once, on the side its queue (the one it was delivered from) stands for.

    Raises
    ------
    _Retryable
        A retryable FaaS error (from a provider, or raised by a local handler on purpose).
    NoCapacity
        The provider's budget had no lease free in time; nothing was sent.
    """
    blueprint = task.blueprint
    placement = blueprint.placement(call.job_id)
    route = route_of_queue(call.job_id, placement, queue)
    ctx = JobContext(call.job_id, call.call_id, call.metadata, attempt)

    def run_locally(reason: PlacementReason) -> JobResult:
        return _step(
            call,
            attempt,
            LOCAL,
            reason,
            lambda: JobResult.success(
                call,
                blueprint.router.call(call.job_id, call.args, ctx),
                attempts=attempt,
                placement_reason=reason,
            ),
        )

    if route.lane is Lane.LOCAL:
        return run_locally(route.reason)
    executor = blueprint.registry.get(call.job_id)

    def invoke() -> JobResult:
        response = task.guards.invoke(executor, call.job_id, call.args)
        return JobResult.success(
            call,
            response.body,
            ran_on=executor.provider_name,
            attempts=attempt,
            metrics=response.metrics,
            placement_reason=route.reason,
        )

    try:
        return _step(call, attempt, executor.provider_name, route.reason, invoke)
    except CircuitOpen as refused:
        if placement.spare is not None:
            return run_locally(PlacementReason.FALLBACK)
        error = JobError(
            ErrorKind.CIRCUIT_OPEN,
            str(refused),
            retryable=True,
            provider=refused.provider,
            retry_after_s=refused.retry_after_s,
        )
        return JobResult.failure(
            call, error, ran_on=refused.provider, attempts=attempt, placement_reason=route.reason
        )


def _step(
    call: JobCall,
    attempt: int,
    ran_on: str,
    reason: PlacementReason,
    run: Callable[[], JobResult],
) -> JobResult:
    """``run()``, with every failure of the job turned into its result.

    Raises
    ------
    _Retryable
        A retryable FaaS error.
    CircuitOpen, NoCapacity
        From the guards, for the caller to decide.
    """
    try:
        return run()
    except (CircuitOpen, NoCapacity):
        raise
    except FaasError as error:
        if error.retryable:
            raise _Retryable(error, ran_on, reason) from error
        return JobResult.failure(
            call,
            JobError.from_faas_error(error),
            ran_on=ran_on,
            attempts=attempt,
            placement_reason=reason,
        )
    except UnknownJob as error:
        return _failure(call, ErrorKind.UNKNOWN_JOB, str(error), attempt, reason=reason)
    except SoftTimeLimitExceeded:
        message = "the job ran past its time limit"
        return _failure(call, ErrorKind.TIMEOUT, message, attempt, ran_on, reason)
    except Exception as error:  # the job's own failure: reported, never retried
        logger.info("job %s failed on call %s: %r", call.job_id, call.call_id, error)
        message = f"{type(error).__name__}: {error}"
        return _failure(call, ErrorKind.FUNCTION_ERROR, message, attempt, ran_on, reason)


def _retry_or_give_up(
    task: ExecuteTask, call: JobCall, failure: _Retryable, attempt: int
) -> dict[str, Any]:
    settings = task.blueprint.settings
    retries = attempt - 1  # retries after a failed attempt; requeues for capacity are not
    if retries >= settings.retry_max:
        return _gave_up(call, failure, attempt).to_wire()
    countdown_s = _retry_countdown_s(settings, call, failure, attempt)
    raise task.retry(
        countdown=countdown_s, exc=failure.error, headers={REQUEUES_HEADER: _requeues(task)}
    )


def _gave_up(call: JobCall, failure: _Retryable, attempt: int) -> JobResult:
    """The result of a call whose retryable failures used up ``retry_max``."""
    error = JobError.from_faas_error(failure.error)
    message = f"gave up after {attempt} attempts: {error.message}"
    error = JobError(error.kind, message, error.retryable, error.provider, error.status)
    return JobResult.failure(
        call, error, ran_on=failure.ran_on, attempts=attempt, placement_reason=failure.reason
    )


def _retry_countdown_s(
    settings: Settings, call: JobCall, failure: _Retryable, attempt: int
) -> float:
    """How long the next attempt waits (and the log line saying so)."""
    countdown_s = compute_backoff_s(
        attempt - 1,
        base_s=settings.retry_base_s,
        cap_s=settings.retry_cap_s,
        retry_after_s=failure.error.retry_after_s,
    )
    logger.info(
        "call %s attempt %d failed (%s); retrying in %.2fs",
        call.call_id,
        attempt,
        failure.error.kind,
        countdown_s,
    )
    return countdown_s


# -- the control tasks ------------------------------------------------------------------


def _warm(task: ControlTask, job_id: int, instances: int) -> int:
    """Ask the executor of FaaS job ``job_id`` to keep ``instances`` started."""
    warmed = task.blueprint.registry.get(job_id).warm(job_id, instances)
    logger.info("warmed job %s: %d of %d instances", job_id, warmed, instances)
    return warmed


def _health(task: ControlTask, job_id: int) -> str:
    """Check FaaS job ``job_id``'s function and store the outcome in its health hash.

    A check that cannot be made is stored as an error and raised (the task fails).
    """
    client = getattr(task.backend, "client", None)  # the result backend's Redis
    try:
        healthy = task.blueprint.registry.get(job_id).health_check(job_id)
    except Exception as error:
        if client is not None:
            store_health(client, job_id, HealthStatus.ERROR, error)
        raise
    status = HealthStatus.HEALTHY if healthy else HealthStatus.UNHEALTHY
    if client is not None:
        store_health(client, job_id, status)
    return status.value


def _failure(
    call: JobCall,
    kind: ErrorKind,
    message: str,
    attempt: int,
    ran_on: str = LOCAL,
    reason: PlacementReason = PlacementReason.POLICY,
) -> JobResult:
    return JobResult.failure(
        call,
        JobError(kind=kind, message=message),
        ran_on=ran_on,
        attempts=attempt,
        placement_reason=reason,
    )


def _requeues(task: ExecuteTask) -> int:
    # Celery puts a message's own headers on the request; a retry carries them only when
    # it is given them again (both retries here do).
    return int(getattr(task.request, REQUEUES_HEADER, None) or 0)


def _delivery_queue(task: ExecuteTask) -> str | None:
    # Our queues route by their own name (workers.app._job_queue_named).
    routing_key = (task.request.delivery_info or {}).get("routing_key")
    return str(routing_key) if routing_key else None


def _queue_job_id(task: ExecuteTask) -> int:
    # A message too broken to name its job is reported under the job of its queue.
    suffix = (_delivery_queue(task) or "").removeprefix(JOB_QUEUE_PREFIX).split(".")[0]
    return int(suffix) if suffix.isdigit() and int(suffix) < 2**32 else 0
