"""The execute-batch task: the calls one message carries run as the calls they are.

A batch is transport only (:mod:`dispatcher._batching`): what the calls share is one message
to consume and acknowledge, one MGET for their idempotency checks and one round trip for the
results that are ready together. Everything else stays per call: the call id is the
idempotency key (a call whose result is stored is announced again, never run), and each call
has its own attempts, retries, metrics and ledger entry (the observer hears of each through
:mod:`workers.signals`) and its own result, stored under its call id.

The calls run at once on a per-process thread pool: FaaS calls bounded by their executor's
connection pool, local calls by the worker's concurrency (a prefork child, one slot, runs
them one at a time). A result is stored as soon as it is there, with whichever others are
ready by then, so a slow call never holds back a fast one. A call that must be retried goes
back as its own execute message with its countdown. A call still running a soft time limit
after it started gets a timeout result; its thread is left to end on its own (a FaaS call
ends at its HTTP timeout). The message is acknowledged (late) once every call has its
result stored or its retry sent: a worker lost before that gets the whole message
redelivered, and only the calls without a stored result run again.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, ClassVar

from celery import Task
from celery.exceptions import Reject
from celery.signals import worker_init, worker_process_init

from dispatcher.errors import DecodeError
from dispatcher.jobs import LOCAL, JobCall, JobError, JobResult
from dispatcher.keys import EXECUTE_BATCH_TASK, EXECUTE_TASK, REQUEUES_HEADER, job_queue
from dispatcher.placement import Lane, route_of_queue
from providers.errors import ErrorKind
from workers.guards import NoCapacity
from workers.idempotency import answered_and_announced
from workers.signals import call_retried, calls_succeeded
from workers.tasks import (
    _delivery_queue,
    _gave_up,
    _queue_job_id,
    _retry_countdown_s,
    _Retryable,
    _run,
)

if TYPE_CHECKING:
    from celery import Celery

    from dispatcher.app import Blueprint
    from workers.guards import ProviderGuards

__all__ = ["BatchTask", "register_batch_task"]

logger = logging.getLogger("blueprint_faas.workers")

#: What running a call of a batch came to: its result, a retryable failure, or no lease.
_Outcome = JobResult | _Retryable | NoCapacity
#: The longest wait for a call of a batch to finish before looking at time limits again.
_WAIT_TICK_S = 1.0
#: How long a finished call's result waits for others of its batch to share its store.
_GATHER_S = 0.002


class BatchTask(Task):  # type: ignore[misc]
    """Base of the execute-batch task; the class attributes are set when it is registered."""

    blueprint: ClassVar[Blueprint]
    #: A call of the batch running this long after its start gets a timeout result.
    call_time_limit_s: ClassVar[float]
    typing = False
    Request = "workers._wake:WakingRequest"
    # The message has no result of its own: each call's result is stored under its call id.
    ignore_result = True
    # Retries are per call (each goes back as its own message), never of the whole batch.
    max_retries = 0

    @property
    def guards(self) -> ProviderGuards:
        """The execute task's provider breakers and budgets: one set per process."""
        execute: Any = self.app.tasks[EXECUTE_TASK]
        guards: ProviderGuards = execute.guards
        return guards


def register_batch_task(app: Celery, blueprint: Blueprint, *, call_time_limit_s: float) -> None:
    """Register the execute-batch task; ``call_time_limit_s`` is each call's soft limit."""
    app.task(
        name=EXECUTE_BATCH_TASK,
        bind=True,
        base=BatchTask,
        blueprint=blueprint,
        call_time_limit_s=call_time_limit_s,
        # Celery's limits would apply to the message, that is to all its calls at once.
        soft_time_limit=None,
        time_limit=None,
    )(_execute_batch)
    worker_init.connect(_on_worker_init, weak=False, dispatch_uid="blueprint-batch-init")
    worker_process_init.connect(
        _on_worker_process_init, weak=False, dispatch_uid="blueprint-batch-child"
    )


def _execute_batch(task: BatchTask, *args: Any, **kwargs: Any) -> str:
    calls, malformed = _decode_batch(task, args, kwargs)
    batch = _Batch(task)
    try:
        if malformed:
            batch.store(malformed)
        answered = answered_and_announced(task.backend, [call.call_id for call in calls])
        batch.run([call for call in calls if call.call_id not in answered])
    except Exception as error:  # the backend or broker stayed away through every retry
        logger.error("batch %s: %r; it goes back to its queue", task.request.id, error)
        raise Reject(repr(error), requeue=True) from error
    return (
        f"<batch job_id={calls[0].job_id if calls else None} calls={len(calls) + len(malformed)} "
        f"answered_before={len(answered)} stored={batch.stored} retried={batch.retried} "
        f"timed_out={batch.timed_out} malformed={len(malformed)}>"
    )


# -- the steps --------------------------------------------------------------------------------


def _decode_batch(
    task: BatchTask, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[list[JobCall], list[JobResult]]:
    """The calls of the message, and an error result for each element that is no call.

    An element that does not even name a call id cannot be answered (no runner can be
    waiting for it under any id): it is logged and dropped.
    """
    wires = args[0] if len(args) == 1 and not kwargs and isinstance(args[0], list) else None
    if wires is None:
        logger.error("batch %s is not a list of calls; dropped", task.request.id)
        return [], []
    calls: dict[str, JobCall] = {}
    malformed: list[JobResult] = []
    for wire in wires:
        try:
            call = JobCall.from_wire(wire)
        except DecodeError as error:
            call_id = wire.get("call_id") if isinstance(wire, Mapping) else None
            if not isinstance(call_id, str) or not call_id:
                logger.error("batch %s holds a call without a call id; dropped", task.request.id)
                continue
            logger.warning("malformed call %s in batch %s: %s", call_id, task.request.id, error)
            stand_in = JobCall(job_id=_queue_job_id(task), call_id=call_id)
            failure = JobError(kind=ErrorKind.MALFORMED_CALL, message=str(error))
            malformed.append(JobResult.failure(stand_in, failure))
            continue
        calls.setdefault(call.call_id, call)
    return list(calls.values()), malformed


class _Batch:
    """The calls of one batch message in flight, and the counts its summary reports."""

    def __init__(self, task: BatchTask) -> None:
        self._task = task
        # queue.Queue, not SimpleQueue: its locks are the ones gevent patches.
        self._finished: queue.Queue[tuple[JobCall, _Outcome]] = queue.Queue()
        # Call id -> when it started running (written by the call's thread).
        self._started: dict[str, float] = {}
        # Read here: the request is the batch thread's own, the calls run on others.
        self._queue = _delivery_queue(task)
        self.stored = self.retried = self.timed_out = 0

    def run(self, calls: list[JobCall]) -> None:
        """Run ``calls`` at once; return when each has its result stored or its retry sent."""
        pool = _call_pool()
        pending = {call.call_id: call for call in calls}
        for call in calls:
            pool.submit(self._run_one, call)
        while pending:
            results: list[JobResult] = []
            for call, outcome in self._next_finished(pending):
                del pending[call.call_id]
                if isinstance(outcome, _Retryable):
                    retried = self._retry(call, outcome)
                    if retried is not None:
                        results.append(retried)
                elif isinstance(outcome, NoCapacity):
                    self._requeue(call, outcome)
                else:
                    results.append(outcome)
            if results:
                self.store(results)

    def store(self, results: list[JobResult]) -> None:
        """Store ``results`` in one round trip, each announced to its runner."""
        task = self._task
        wires = [result.to_wire() for result in results]
        store_successes = getattr(task.backend, "store_successes", None)
        if store_successes is not None:
            store_successes([(wire["call_id"], wire) for wire in wires])
        else:  # the embedded file backend: one store per call, as for a lone call
            for wire in wires:
                task.backend.store_result(wire["call_id"], wire, "SUCCESS")
        self.stored += len(wires)
        calls_succeeded.send(sender=task, results=wires)

    # -- one call -----------------------------------------------------------------------

    def _run_one(self, call: JobCall) -> None:
        blueprint = self._task.blueprint
        route = route_of_queue(call.job_id, blueprint.placement(call.job_id), self._queue)
        slot = _local_slot() if route.lane is Lane.LOCAL else contextlib.nullcontext()
        outcome: _Outcome
        with slot:
            self._started[call.call_id] = time.monotonic()
            try:
                outcome = _run(self._task, call, 1, self._queue)
            except (_Retryable, NoCapacity) as failure:
                outcome = failure
            except BaseException as error:  # _run keeps the job's own errors; this is ours
                logger.exception("call %s of a batch failed in the worker", call.call_id)
                message = f"{type(error).__name__}: {error}"
                outcome = JobResult.failure(call, JobError(ErrorKind.WORKER_FAILURE, message))
        self._finished.put((call, outcome))

    def _retry(self, call: JobCall, failure: _Retryable) -> JobResult | None:
        """Send ``call`` back alone for its second attempt; its result if it may not retry."""
        task = self._task
        settings = task.blueprint.settings
        if settings.retry_max < 1:
            return _gave_up(call, failure, attempt=1)
        countdown_s = _retry_countdown_s(settings, call, failure, attempt=1)
        self._send_alone(call, countdown_s, requeues=0)
        self.retried += 1
        call_retried.send(sender=task, job_id=call.job_id, reason=failure.error)
        return None

    def _requeue(self, call: JobCall, waited: NoCapacity) -> None:
        """Send ``call`` back alone: no concurrency lease was free (not an attempt)."""
        logger.info("call %s: %s; back to its queue", call.call_id, waited)
        self._send_alone(call, self._task.blueprint.settings.budget_requeue_s, requeues=1)
        self.retried += 1
        call_retried.send(sender=self._task, job_id=call.job_id, reason=waited)

    def _send_alone(self, call: JobCall, countdown_s: float, requeues: int) -> None:
        # As the execute task's own retry would: retries counts attempts and requeues, the
        # header the requeues, so the execute task takes the call from there.
        self._task.app.send_task(
            EXECUTE_TASK,
            args=(call.to_wire(),),
            task_id=call.call_id,
            queue=self._queue or job_queue(call.job_id),
            countdown=countdown_s,
            retries=1,
            headers={REQUEUES_HEADER: requeues},
        )

    # -- waiting ------------------------------------------------------------------------

    def _next_finished(self, pending: dict[str, JobCall]) -> list[tuple[JobCall, _Outcome]]:
        """The outcomes of the pending calls that are ready, waiting for at least one.

        A call past its time limit is one of them, with a timeout result.
        """
        while True:
            try:
                first = self._finished.get(timeout=self._wait_s(pending))
            except queue.Empty:
                expired = self._expired(pending)
                if expired:
                    return expired
                continue
            if len(pending) > 1:
                # Calls of a batch mostly start together and end close together: a moment's
                # wait lets the ones ending now share the store (and the runner's next batch).
                time.sleep(_GATHER_S)
            # A call that timed out may still finish later: its outcome is not wanted.
            return [
                item for item in _and_queued(first, self._finished) if item[0].call_id in pending
            ]

    def _wait_s(self, pending: dict[str, JobCall]) -> float:
        limit_s = self._task.call_time_limit_s
        starts = [self._started[c] for c in pending if c in self._started]
        if not starts:
            return _WAIT_TICK_S
        return min(_WAIT_TICK_S, max(0.0, min(starts) + limit_s - time.monotonic()))

    def _expired(self, pending: dict[str, JobCall]) -> list[tuple[JobCall, _Outcome]]:
        limit_s = self._task.call_time_limit_s
        now = time.monotonic()
        expired: list[tuple[JobCall, _Outcome]] = []
        for call_id, call in pending.items():
            started = self._started.get(call_id)
            if started is not None and now - started >= limit_s:
                logger.warning("call %s of a batch ran past its time limit", call_id)
                error = JobError(ErrorKind.TIMEOUT, "the job ran past its time limit")
                expired.append((call, JobResult.failure(call, error, ran_on=self._ran_on(call))))
        self.timed_out += len(expired)
        return expired

    def _ran_on(self, call: JobCall) -> str:
        registry = self._task.blueprint.registry
        return registry.get(call.job_id).provider_name if call.job_id in registry else LOCAL


def _and_queued(
    first: tuple[JobCall, _Outcome],
    finished: queue.Queue[tuple[JobCall, _Outcome]],
) -> Iterator[tuple[JobCall, _Outcome]]:
    yield first
    while True:
        try:
            yield finished.get_nowait()
        except queue.Empty:
            return


# -- per-process resources -------------------------------------------------------------------

#: Calls of batches that may run at once in this process (local ones: see _local_slot).
_POOL_THREADS = 256
_local_concurrency = 1
_pool: ThreadPoolExecutor | None = None
_local_slots: threading.BoundedSemaphore | None = None
_resources_lock = threading.Lock()


def _call_pool() -> ThreadPoolExecutor:
    global _pool
    with _resources_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(_POOL_THREADS, thread_name_prefix="blueprint-batch")
        return _pool


def _local_slot() -> threading.BoundedSemaphore:
    # Local calls of batches run at most as many at once as the worker's concurrency, as
    # they would one message each.
    global _local_slots
    with _resources_lock:
        if _local_slots is None:
            _local_slots = threading.BoundedSemaphore(_local_concurrency)
        return _local_slots


def _on_worker_init(sender: Any = None, **_: Any) -> None:
    global _local_concurrency
    concurrency = getattr(sender, "concurrency", None)
    if isinstance(concurrency, int) and concurrency > 0:
        _local_concurrency = concurrency


def _on_worker_process_init(**_: Any) -> None:
    # A prefork child is one slot of the pool.
    global _local_concurrency
    _local_concurrency = 1
