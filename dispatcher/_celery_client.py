"""The runner's side of Celery: publishing calls and hearing about their results.

A Celery app used only as a producer and a result source, never as a worker, and the
watchers that tell a run when a call's result is stored: pushed by the Redis backend's
pub/sub, or polled from a backend that cannot push (the embedded file backend).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from celery import states

from dispatcher._batching import wire_size
from dispatcher.jobs import JobCall
from dispatcher.keys import EXECUTE_BATCH_TASK, EXECUTE_TASK, job_queue

if TYPE_CHECKING:
    from celery import Celery
    from celery.result import AsyncResult

    from dispatcher.settings import Settings

logger = logging.getLogger("blueprint_faas.runner")

_LISTEN_TIMEOUT_S = 0.5
#: How often the pub/sub listener reads the stored results of calls it has waited on that long.
_CATCH_UP_S = 1.0
#: Calls per MGET of a catch-up read.
_CATCH_UP_BATCH = 200
# How long one wait of the pub/sub listener lasts before it looks at whether the run is over:
# ``run`` returns at most this late after the last result (0.5 s cost a 2,000-call run 10 %).
_DRAIN_TIMEOUT_S = 0.02

#: A watched call's stored outcome: ``(call_id, state, value)``.
Ready = tuple[str, str, object]
#: Told the outcomes that are stored, several at once when they come in together (a batch's).
OnReady = Callable[[list[Ready]], None]
#: Pub/sub messages read at once, without waiting, after one arrives.
_DRAIN_BURST = 256


def argsrepr(call: JobCall) -> str:
    # What Flower and worker logs show instead of the payload and metadata values.
    keys = sorted(call.metadata)
    return f"<call job_id={call.job_id} args_bytes={len(call.args)} metadata_keys={keys}>"


def batch_argsrepr(calls: list[JobCall]) -> str:
    # A batch's summary: its job, how many calls and how big, never a payload.
    args_bytes = sum(len(call.args) for call in calls)
    wire_bytes = sum(wire_size(call) for call in calls)
    return (
        f"<batch job_id={calls[0].job_id} calls={len(calls)} args_bytes={args_bytes} "
        f"wire_bytes~{wire_bytes}>"
    )


class CeleryClient:
    """A Celery app used only to publish calls and read results (never a worker)."""

    def __init__(self, settings: Settings) -> None:
        # Imported here so the CLI can apply gevent's monkey-patching before Celery loads.
        from celery import Celery

        self._settings = settings
        self.app: Celery = Celery("blueprint-faas-runner", set_as_current=False)
        self.app.conf.update(settings.celery_connection_config())
        # The backend is thread-local in Celery: keep the one results are subscribed on.
        self.backend = self.app.backend

    def publish(self, call: JobCall, queue: str | None = None) -> AsyncResult:
        """Send ``call`` to ``queue`` (its job's own when None), the call id as task id.

        Raises
        ------
        kombu.exceptions.OperationalError
            The broker stayed unreachable through every publish retry.
        """
        return self.app.send_task(
            EXECUTE_TASK,
            args=(call.to_wire(),),
            task_id=call.call_id,
            queue=job_queue(call.job_id) if queue is None else queue,
            argsrepr=argsrepr(call),
            kwargsrepr="{}",
        )

    def publish_batch(self, calls: list[JobCall], queue: str | None = None) -> None:
        """Send several calls of one job to ``queue`` in one message (one: :meth:`publish`).

        The message's task id is a fresh batch id, whose own result is never stored: each
        call's result is stored under its call id, as if it had travelled alone.

        Raises
        ------
        ValueError
            ``calls`` is empty or holds calls of more than one job.
        kombu.exceptions.OperationalError
            The broker stayed unreachable through every publish retry.
        """
        if len(calls) == 1:
            self.publish(calls[0], queue)
            return
        if not calls or len({call.job_id for call in calls}) != 1:
            raise ValueError("a batch holds one or more calls of one job")
        self.app.send_task(
            EXECUTE_BATCH_TASK,
            args=([call.to_wire() for call in calls],),
            task_id=f"batch-{uuid.uuid4()}",
            queue=job_queue(calls[0].job_id) if queue is None else queue,
            argsrepr=batch_argsrepr(calls),
            kwargsrepr="{}",
            ignore_result=True,
        )

    def close(self) -> None:
        """Release the broker and backend connections of this client."""
        consumer = getattr(self.backend, "result_consumer", None)
        if consumer is not None:
            consumer.stop()
        self.app.close()

    def watcher(self, on_ready: OnReady) -> ResultWatcher:
        from celery.backends.asynchronous import AsyncBackendMixin

        if isinstance(self.backend, AsyncBackendMixin):
            return _PubSubWatcher(self, on_ready)
        return _PollingWatcher(self, on_ready)


class ResultWatcher:
    """Tells the run when a watched call's result is stored."""

    def __init__(self, client: CeleryClient, on_ready: OnReady) -> None:
        self._client = client
        self._on_ready = on_ready

    def watch(self, call_id: str) -> None:
        raise NotImplementedError

    def forget(self, call_id: str) -> None:
        raise NotImplementedError

    def listen(self, done: threading.Event) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Stop watching whatever is still pending (a run cut short)."""


class _PubSubWatcher(ResultWatcher):
    """Results pushed by the backend (Redis pub/sub); subscribed before the call is sent.

    A notification published while the subscription is down (a Redis restart, a reconnect
    racing a store: Celery re-reads stored results *before* it subscribes again) is never
    repeated. So every :data:`_CATCH_UP_S` the listener also reads the stored results of the
    calls it has waited on for that long, in one MGET: a missed result arrives at most that
    late, and exactly once, since a call leaves ``_pending`` when it is first answered.
    """

    def __init__(self, client: CeleryClient, on_ready: OnReady) -> None:
        super().__init__(client, on_ready)
        # Celery keeps only weak references to fulfilled-callback owners: hold them here,
        # with the time each call started being watched.
        self._pending: dict[str, tuple[AsyncResult, float]] = {}
        # Outcomes heard and not yet handed over (only the listener thread touches it).
        self._heard: list[Ready] = []

    def watch(self, call_id: str) -> None:
        from celery.result import AsyncResult

        result = AsyncResult(call_id, backend=self._client.backend, app=self._client.app)
        self._pending[call_id] = (result, time.monotonic())
        result.then(self._fulfilled)

    def forget(self, call_id: str) -> None:
        entry = self._pending.pop(call_id, None)
        if entry is not None:
            self._client.backend.remove_pending_result(entry[0])

    def close(self) -> None:
        for call_id in list(self._pending):
            self.forget(call_id)

    def _fulfilled(self, result: AsyncResult) -> None:
        if self._pending.pop(result.id, None) is not None:
            self._heard.append((result.id, result.state, result.result))

    def listen(self, done: threading.Event) -> None:
        consumer = self._client.backend.result_consumer
        caught_up_at = time.monotonic()
        while not done.is_set():
            try:
                consumer.drain_events(timeout=_DRAIN_TIMEOUT_S)
                # Results stored together (a batch's) arrive together: hand them over as one,
                # so that the run frees their slots, and fills them, at once.
                for _ in range(_DRAIN_BURST):
                    heard = len(self._heard)
                    consumer.drain_events(timeout=0)
                    if len(self._heard) == heard:
                        break
            except Exception as error:  # reconnects itself; keep listening meanwhile
                logger.warning("result listener: %r; reading stored results instead", error)
                self._hand_over()
                done.wait(_LISTEN_TIMEOUT_S)
                self._catch_up(older_than_s=0)
                caught_up_at = time.monotonic()
            if time.monotonic() - caught_up_at >= _CATCH_UP_S:
                self._catch_up(older_than_s=_CATCH_UP_S)
                caught_up_at = time.monotonic()
            self._hand_over()

    def _hand_over(self) -> None:
        if self._heard:
            heard, self._heard = self._heard, []
            self._on_ready(heard)

    def _catch_up(self, older_than_s: float) -> None:
        # Results are stored whether or not their notification reached us: read the ones of
        # the calls waited on for a while, so none waits on a notification that never comes.
        backend = self._client.backend
        watched_before = time.monotonic() - older_than_s
        call_ids = [
            call_id
            for call_id, (_, since) in list(self._pending.items())
            if since <= watched_before
        ]
        for start in range(0, len(call_ids), _CATCH_UP_BATCH):
            batch = call_ids[start : start + _CATCH_UP_BATCH]
            try:
                values = backend.mget([backend.get_key_for_task(call_id) for call_id in batch])
            except Exception as error:
                logger.warning("reading stored results: %r", error)
                return
            for call_id, value in zip(batch, values, strict=True):
                if value is not None:
                    self._deliver_stored(call_id, backend.decode_result(value))

    def _deliver_stored(self, call_id: str, meta: dict[str, Any]) -> None:
        if meta["status"] not in states.READY_STATES:
            return
        entry = self._pending.pop(call_id, None)
        if entry is None:
            return
        with contextlib.suppress(Exception):  # unsubscribing needs a working link
            self._client.backend.remove_pending_result(entry[0])
        self._heard.append((call_id, meta["status"], meta["result"]))


class _PollingWatcher(ResultWatcher):
    """Results read back from a backend that cannot push them (the embedded file backend)."""

    def __init__(self, client: CeleryClient, on_ready: OnReady) -> None:
        super().__init__(client, on_ready)
        self._pending: set[str] = set()
        self._lock = threading.Lock()

    def watch(self, call_id: str) -> None:
        with self._lock:
            self._pending.add(call_id)

    def forget(self, call_id: str) -> None:
        with self._lock:
            self._pending.discard(call_id)

    def listen(self, done: threading.Event) -> None:
        backend = self._client.backend
        interval_s = self._client._settings.poll_interval_s
        while not done.wait(interval_s):
            with self._lock:
                call_ids = list(self._pending)
            ready: list[Ready] = []
            for call_id in call_ids:
                try:
                    meta = backend.get_task_meta(call_id, cache=False)
                except Exception as error:
                    logger.warning("result poll of %s: %r", call_id, error)
                    continue
                if meta["status"] in states.READY_STATES:
                    self.forget(call_id)
                    ready.append((call_id, meta["status"], meta["result"]))
            if ready:
                self._on_ready(ready)
