"""The runner: publishes JobCalls to their job queues and hands every JobResult to consumers.

It talks to workers only through Celery messages and stored results (it shares the job
model and ``dispatcher.keys`` with them, nothing else). Three threads cooperate:

* the *feeder* pulls calls from the producer, one free slot at a time (backpressure: a slow
  worker pool slows the producer down, memory stays bounded): ``max_in_flight`` calls in
  flight plus, when batches can form, up to one batch read ahead, waiting for a slot;
* the *listener* waits for results: on Redis through the result backend's pub/sub
  (one subscription per call, no polling per task), elsewhere by polling the backend;
* the caller's thread publishes calls and hands results to consumers, in completion order.
  The calls ready at the same moment go out together: several calls of one job share a
  message (:mod:`dispatcher._batching`), a lone call is published at once.

A job that fails becomes an error JobResult like any other: the runner never stops because
of one job.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
import queue
import threading
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self

from dispatcher._batching import batches
from dispatcher._celery_client import CeleryClient, Ready, ResultWatcher
from dispatcher._redis import broker_redis
from dispatcher.app import Blueprint
from dispatcher.errors import DecodeError
from dispatcher.jobs import JobCall, JobError, JobResult
from dispatcher.placement import Placer
from dispatcher.registry import FaasRegistry
from dispatcher.router import Router
from dispatcher.settings import Settings
from providers.errors import ErrorKind

if TYPE_CHECKING:
    from providers.base import FaasExecutor

__all__ = [
    "BlueprintRunner",
    "BlueprintRunnerBuilder",
    "Consumer",
    "Producer",
    "RunSummary",
    "submit",
]

logger = logging.getLogger("blueprint_faas.runner")

#: Where calls come from: any iterable or async iterable of JobCalls.
Producer = Iterable[JobCall] | AsyncIterable[JobCall]
#: Where results go: a callable given every JobResult; it may return an awaitable.
Consumer = Callable[[JobResult], Any]

_SLOT_WAIT_S = 0.1


@dataclass(frozen=True, slots=True)
class RunSummary:
    """What a finished run did."""

    submitted: int
    succeeded: int
    failed: int
    elapsed_s: float
    peak_in_flight: int
    #: Messages the calls were published in (fewer than ``submitted`` when batches formed).
    messages: int = 0


class BlueprintRunnerBuilder:
    """Assembles a runner the way the original SDK's builder did.

    Example::

        BlueprintRunner.builder(settings).router(router).producer(calls)
            .consumer(print).with_faas_executor(1, executor).run()
    """

    def __init__(self, settings: Settings | None = None) -> None:
        self._blueprint = Blueprint(settings=settings)
        self._producer: Producer | Callable[[], Producer] | None = None
        self._consumers: list[Consumer] = []
        self._max_in_flight: int | None = None

    def app(self, blueprint: Blueprint) -> Self:
        """Take router, registry, settings, producer and consumers from an app definition."""
        self._blueprint = blueprint
        self._producer = blueprint.producer
        self._consumers = list(blueprint.consumers)
        return self

    def router(self, router: Router) -> Self:
        self._blueprint.router = router
        return self

    def registry(self, registry: FaasRegistry) -> Self:
        self._blueprint.registry = registry
        return self

    def producer(self, producer: Producer | Callable[[], Producer]) -> Self:
        self._producer = producer
        return self

    def consumer(self, consumer: Consumer) -> Self:
        """Add a consumer; every consumer receives every result."""
        self._consumers.append(consumer)
        return self

    def with_faas_executor(self, job_id: int, executor: FaasExecutor) -> Self:
        self._blueprint.with_faas_executor(job_id, executor)
        return self

    def max_in_flight(self, limit: int) -> Self:
        """Override ``settings.max_in_flight`` for this runner."""
        if limit < 1:
            raise ValueError(f"max_in_flight must be at least 1, got {limit}")
        self._max_in_flight = limit
        return self

    def build(self) -> BlueprintRunner:
        """The runner.

        Raises
        ------
        ValueError
            No producer was given.
        """
        if self._producer is None:
            raise ValueError("a runner needs a producer")
        return BlueprintRunner(
            self._blueprint,
            self._producer,
            self._consumers,
            max_in_flight=self._max_in_flight,
        )

    def run(self) -> RunSummary:
        """Build the runner and run it until the producer is exhausted and all calls answered."""
        return self.build().run()

    async def run_async(self) -> RunSummary:
        return await self.build().run_async()


class BlueprintRunner:
    """Publishes a producer's calls and hands their results to consumers as they complete.

    Parameters
    ----------
    blueprint:
        The app definition: settings, and the job ids that exist (a call of an unknown job
        id gets an error result without being published, unless the blueprint knows no job
        at all, as for a runner that only forwards).
    producer:
        An iterable or async iterable of JobCalls, or a zero-argument callable making one.
    consumers:
        Callables given every JobResult; async ones are awaited. One that raises is logged
        and the run goes on.
    max_in_flight:
        Calls published and not yet answered at any moment; ``settings.max_in_flight`` when
        None.
    """

    def __init__(
        self,
        blueprint: Blueprint,
        producer: Producer | Callable[[], Producer],
        consumers: Iterable[Consumer] = (),
        *,
        max_in_flight: int | None = None,
    ) -> None:
        blueprint.check_placements()
        self._blueprint = blueprint
        self._producer = producer
        self._consumers = list(consumers)
        self._max_in_flight = max_in_flight or blueprint.settings.max_in_flight
        # Runs in progress, for ``stop``: a runner may run again, or several times at once.
        self._active_runs: set[_Run] = set()
        self._active_runs_lock = threading.Lock()

    @classmethod
    def builder(cls, settings: Settings | None = None) -> BlueprintRunnerBuilder:
        """Start building a runner; settings come from the environment when None."""
        return BlueprintRunnerBuilder(settings)

    def stop(self) -> None:
        """Take no more calls from the producer; ``run`` returns once in-flight calls end.

        Every run in progress on this runner stops; a run started afterwards starts afresh.
        """
        with self._active_runs_lock:
            runs = list(self._active_runs)
        for run in runs:
            run.stop()

    def run(self) -> RunSummary:
        """Run until the producer is exhausted (or :meth:`stop`) and every call is answered.

        Raises
        ------
        Exception
            Whatever the producer raised, once the calls already published are answered.
        """
        return self._execute(self._track(_Run(self, caller_loop=None)))

    async def run_async(self) -> RunSummary:
        """:meth:`run` from async code: async producers and consumers use the caller's loop."""
        loop = asyncio.get_running_loop()
        run = self._track(_Run(self, caller_loop=loop))
        return await asyncio.to_thread(self._execute, run)

    def _track(self, run: _Run) -> _Run:
        # Before the run's threads start, so that ``stop`` reaches a run that is starting.
        with self._active_runs_lock:
            self._active_runs.add(run)
        return run

    def _execute(self, run: _Run) -> RunSummary:
        # Forgotten only when it ends, even if an awaiting ``run_async`` was cancelled.
        try:
            return run.execute()
        finally:
            with self._active_runs_lock:
                self._active_runs.discard(run)


def submit(
    blueprint: Blueprint, call: JobCall, *, wait: bool = False, timeout_s: float | None = None
) -> JobResult | None:
    """Publish one call; with ``wait``, block until its result and return it.

    Returns
    -------
    JobResult | None
        The call's result with ``wait``; None once it is published without ``wait``. A call
        of a job the blueprint does not accept (see :meth:`Blueprint.accepts`) is answered
        at once, with or without ``wait``, by an ``unknown_job`` failure, and not published:
        no worker would ever take it.

    Raises
    ------
    celery.exceptions.TimeoutError
        ``wait`` and no result within ``timeout_s``.
    """
    if not blueprint.accepts(call.job_id):
        return _unknown_job(call)
    client = CeleryClient(blueprint.settings)
    broker = broker_redis(blueprint.settings)
    try:
        result = client.publish(call, _queue_of(Placer(blueprint, broker), call))
    finally:
        if broker is not None:
            broker.close()
    try:
        if not wait:
            return None
        result.get(timeout=timeout_s, propagate=False, interval=blueprint.settings.poll_interval_s)
        return _result_from_meta(call, result.state, result.result)
    finally:
        client.close()


# -- one run ------------------------------------------------------------------------------

_CALL = "call"
_RESULTS = "results"
_PRODUCER_DONE = "producer_done"


@dataclass(slots=True)
class _InFlight:
    call: JobCall
    published_at: float


class _Run:
    """The state of one ``run``: its threads, its in-flight calls and its counters."""

    def __init__(self, runner: BlueprintRunner, caller_loop: asyncio.AbstractEventLoop | None):
        self._runner = runner
        self._blueprint = runner._blueprint
        self._caller_loop = caller_loop
        self._own_loop: asyncio.AbstractEventLoop | None = None
        self._events: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        # Calls taken from the producer and not yet answered: those in flight, plus up to a
        # batch of calls read ahead, waiting for an in-flight slot (``_waiting``), so that
        # the calls a burst of results makes room for go out together.
        # With one slot, or batching off, no batch can form: nothing is read ahead.
        batch_max_calls = self._blueprint.settings.batch_max_calls
        read_ahead = min(batch_max_calls, runner._max_in_flight)
        if batch_max_calls == 1 or runner._max_in_flight == 1:
            read_ahead = 0
        self._slots = threading.BoundedSemaphore(runner._max_in_flight + read_ahead)
        self._waiting: collections.deque[JobCall] = collections.deque()
        self._in_flight: dict[str, _InFlight] = {}
        self._done = threading.Event()
        self._stopping = threading.Event()
        self._producer_error: BaseException | None = None
        self._submitted = self._succeeded = self._failed = self._peak = self._messages = 0

    def stop(self) -> None:
        """Take no more calls from the producer; safe from any thread."""
        self._stopping.set()

    def execute(self) -> RunSummary:
        started = time.perf_counter()
        client = CeleryClient(self._blueprint.settings)
        watcher = client.watcher(self._on_ready)
        listener = threading.Thread(
            target=watcher.listen, args=(self._done,), name="blueprint-results", daemon=True
        )
        feeder = threading.Thread(target=self._feed, name="blueprint-producer", daemon=True)
        broker = broker_redis(self._blueprint.settings)
        listener.start()
        feeder.start()
        try:
            self._loop(client, watcher, Placer(self._blueprint, broker))
        finally:
            self._done.set()
            self._stopping.set()  # the feeder may be waiting for a slot: let it go
            listener.join(timeout=5)
            watcher.close()
            client.close()
            if broker is not None:
                broker.close()
            if self._own_loop is not None:
                self._own_loop.close()
        if self._producer_error is not None:
            raise self._producer_error
        return RunSummary(
            submitted=self._submitted,
            succeeded=self._succeeded,
            failed=self._failed,
            elapsed_s=time.perf_counter() - started,
            peak_in_flight=self._peak,
            messages=self._messages,
        )

    def _loop(self, client: CeleryClient, watcher: ResultWatcher, placer: Placer) -> None:
        producer_done = False
        while not (producer_done and not self._in_flight and not self._waiting):
            for event in self._ready_events():
                if event[0] == _CALL:
                    self._waiting.append(event[1])
                elif event[0] == _RESULTS:
                    for call_id, state, value in event[1]:
                        self._complete(call_id, state, value)
                else:
                    producer_done = True
            self._publish_waiting(client, watcher, placer)

    def _ready_events(self) -> Iterator[tuple[Any, ...]]:
        # Waits for one event, then takes every event already queued behind it, so that the
        # calls ready at this moment are published together (and a lone call at once).
        yield self._events.get()
        while True:
            try:
                yield self._events.get_nowait()
            except queue.Empty:
                return

    # -- publishing -----------------------------------------------------------------------

    def _publish_waiting(
        self, client: CeleryClient, watcher: ResultWatcher, placer: Placer
    ) -> None:
        # As many waiting calls as there are free in-flight slots, at once; again if a
        # failed publish freed slots (nothing else may come to wake the loop).
        limit = self._runner._max_in_flight
        while self._waiting and len(self._in_flight) < limit:
            accepted: list[JobCall] = []
            while self._waiting and len(self._in_flight) < limit:
                call = self._waiting.popleft()
                if self._accept(watcher, call):
                    accepted.append(call)
            if accepted:
                self._publish(client, watcher, placer, accepted)

    def _publish(
        self, client: CeleryClient, watcher: ResultWatcher, placer: Placer, accepted: list[JobCall]
    ) -> None:
        # Each call is placed on its own; a batch holds calls placed on one queue.
        settings = self._blueprint.settings
        by_queue: dict[str | None, list[JobCall]] = {}
        for call in accepted:
            by_queue.setdefault(_queue_of(placer, call), []).append(call)
        for queue_name, calls in by_queue.items():
            for group in batches(calls, settings.batch_max_calls, settings.batch_max_bytes):
                self._publish_group(client, watcher, group, queue_name)

    def _publish_group(
        self,
        client: CeleryClient,
        watcher: ResultWatcher,
        group: list[JobCall],
        queue_name: str | None,
    ) -> None:
        try:
            client.publish_batch(group, queue_name)
            self._messages += 1
        except Exception as error:  # broker unreachable after every publish retry
            logger.error(
                "cannot publish %d call(s) of job %s: %r", len(group), group[0].job_id, error
            )
            for call in group:
                watcher.forget(call.call_id)
                del self._in_flight[call.call_id]
                self._deliver(
                    _failure(call, ErrorKind.PUBLISH_FAILED, f"{type(error).__name__}: {error}")
                )

    def _accept(self, watcher: ResultWatcher, call: JobCall) -> bool:
        """Whether ``call`` is to be published; it is watched from now on if so."""
        if call.call_id in self._in_flight:
            logger.warning("call %s is already in flight; the duplicate is dropped", call.call_id)
            self._slots.release()
            return False
        self._submitted += 1
        if not self._blueprint.accepts(call.job_id):
            self._deliver(_unknown_job(call))
            return False
        self._in_flight[call.call_id] = _InFlight(call, time.perf_counter())
        self._peak = max(self._peak, len(self._in_flight))
        watcher.watch(call.call_id)
        return True

    def _on_ready(self, ready: list[Ready]) -> None:
        # Runs in the listener thread; everything else happens in the caller's thread.
        self._events.put((_RESULTS, ready))

    def _complete(self, call_id: str, state: str, value: object) -> None:
        entry = self._in_flight.pop(call_id, None)
        if entry is None:
            return
        self._deliver(_result_from_meta(entry.call, state, value))

    def _deliver(self, result: JobResult) -> None:
        if result.ok:
            self._succeeded += 1
        else:
            self._failed += 1
        for consumer in self._runner._consumers:
            try:
                outcome = consumer(result)
                if inspect.isawaitable(outcome):
                    self._await(outcome)
            except Exception:
                logger.exception("consumer %r failed on call %s", consumer, result.call_id)
        self._slots.release()

    def _await(self, awaitable: Awaitable[Any]) -> None:
        if self._caller_loop is not None:
            asyncio.run_coroutine_threadsafe(_as_coroutine(awaitable), self._caller_loop).result()
            return
        if self._own_loop is None:
            self._own_loop = asyncio.new_event_loop()
        self._own_loop.run_until_complete(awaitable)

    # -- the feeder thread ------------------------------------------------------------------

    def _feed(self) -> None:
        try:
            source = self._runner._producer
            if callable(source) and not isinstance(source, Iterable | AsyncIterable):
                source = source()
            if isinstance(source, AsyncIterable):
                self._feed_async(source)
            else:
                self._feed_sync(iter(source))
        except BaseException as error:
            logger.error("the producer failed: %r; finishing the calls in flight", error)
            self._producer_error = error
        finally:
            self._events.put((_PRODUCER_DONE,))

    def _feed_sync(self, calls: Iterator[JobCall]) -> None:
        while self._take_slot():
            try:
                call = next(calls)
            except StopIteration:
                self._slots.release()
                return
            self._put_call(call)

    def _feed_async(self, calls: AsyncIterable[JobCall]) -> None:
        async def pump() -> None:
            iterator = aiter(calls)
            while await asyncio.to_thread(self._take_slot):
                try:
                    call = await anext(iterator)
                except StopAsyncIteration:
                    self._slots.release()
                    return
                self._put_call(call)

        if self._caller_loop is None:
            asyncio.run(pump())
        else:
            asyncio.run_coroutine_threadsafe(pump(), self._caller_loop).result()

    def _take_slot(self) -> bool:
        # Waits for a free in-flight slot; False once the run is stopping.
        while not self._slots.acquire(timeout=_SLOT_WAIT_S):
            if self._stopping.is_set():
                return False
        if self._stopping.is_set():
            self._slots.release()
            return False
        return True

    def _put_call(self, call: object) -> None:
        if isinstance(call, JobCall):
            self._events.put((_CALL, call))
            return
        logger.error("the producer yielded a %s, not a JobCall; skipped", type(call).__name__)
        self._slots.release()


async def _as_coroutine(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def _queue_of(placer: Placer, call: JobCall) -> str | None:
    """The queue ``placer`` picks for ``call``; the job's own if its Redis cannot be read.

    A backlog or breaker that cannot be read must not lose the call: its home side serves it.
    """
    try:
        return placer.route(call.job_id).queue
    except Exception as error:
        logger.warning("cannot place call %s (%r); it goes to its job's queue", call.call_id, error)
        return None


def _failure(call: JobCall, kind: ErrorKind, message: str) -> JobResult:
    return JobResult.failure(call, JobError(kind=kind, message=message))


def _unknown_job(call: JobCall) -> JobResult:
    return _failure(call, ErrorKind.UNKNOWN_JOB, f"job {call.job_id} is not defined")


def _result_from_meta(call: JobCall, state: str, value: object) -> JobResult:
    """The JobResult a stored Celery state stands for (a failed *task* is a worker failure)."""
    if state == "SUCCESS":
        try:
            return JobResult.from_wire(value)
        except DecodeError as error:
            return _failure(
                call, ErrorKind.WORKER_FAILURE, f"the stored result is unreadable: {error}"
            )
    if isinstance(value, BaseException):
        message = f"{type(value).__name__}: {value}"
    else:
        message = f"task ended in state {state}"
    return _failure(call, ErrorKind.WORKER_FAILURE, message)
