"""Who holds which call: consumer liveness, and returning a dead consumer's calls to its queues.

A consumer (one worker's task channel, :mod:`dispatcher._broker`) registers itself in
:data:`~dispatcher.keys.CONSUMERS_KEY`, and every call it takes off a queue is recorded, in the
same atomic step as the pop, in its in-flight hash (delivery tag -> the list the call came
from). It keeps a liveness key with a short TTL, renewed by :class:`ConsumerLiveness`'s own
thread: how long its tasks run does not matter, only whether the process is there.

The same thread is every worker's share of the restorer's job: when another consumer's
liveness key has been missing for a grace period, it takes the restorer lock (one restorer at
a time) and puts that consumer's calls back at the front of their queues, one atomic
transaction per call. A restorer killed halfway leaves the calls it had not reached recorded
as they were, for the next one. The grace period keeps a Redis outage longer than the TTL
from looking like the death of every consumer: a live one renews its key as soon as Redis is
back, well within the grace.

kombu's visibility timeout stays as the backstop for anything recorded outside this scheme.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis
from redis.exceptions import LockError

from dispatcher.keys import (
    CONSUMERS_KEY,
    RESTORER_LOCK_KEY,
    consumer_in_flight_key,
    consumer_liveness_key,
    wake_key,
)

__all__ = [
    "WAKE_TOKEN",
    "ConsumerLiveness",
    "fault_point",
    "new_consumer_id",
    "renew_delivery",
]

logger = logging.getLogger("blueprint_faas.broker")

#: The token a wake list carries; its value means nothing.
WAKE_TOKEN = b"1"

#: Test-only fault injection: a step name after which the process SIGKILLs itself.
_FAULT_ENV = "BLUEPRINT_TEST_FAULT"


def fault_point(step: str) -> None:
    """Die here, as a ``kill -9`` would, when the tests ask for it (never in production)."""
    if os.environ.get(_FAULT_ENV) == step:
        os.kill(os.getpid(), signal.SIGKILL)


def new_consumer_id() -> str:
    """A consumer id no other process, on any host, will ever use."""
    return f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def renew_delivery(payload: dict[str, Any]) -> None:
    """Mark a message being put back as redelivered, under a new delivery tag.

    The new tag keeps a late acknowledgement of the earlier delivery (a consumer presumed dead
    that was only slow) from removing the record of the new one.
    """
    properties = payload.get("properties")
    if not isinstance(properties, dict):
        return
    properties["delivery_tag"] = str(uuid.uuid4())
    info = properties.get("delivery_info")
    if isinstance(info, dict):
        info["redelivered"] = True
    headers = payload.get("headers")
    if isinstance(headers, dict):
        headers["redelivered"] = True


class ConsumerLiveness:
    """Keeps one consumer alive in Redis and restores the calls of consumers that died.

    Parameters
    ----------
    pool:
        The connection pool of the consumer's channel (the thread uses a client of its own).
    consumer_id:
        The consumer's id (:func:`new_consumer_id`).
    unacked_key, unacked_index_key:
        kombu's records of unacknowledged messages, which a restore clears.
    queue_of:
        The queue a list key belongs to (a priority list's queue).
    ttl_s, interval_s:
        The liveness key's TTL, and how often it is renewed and others are checked.
    """

    def __init__(
        self,
        pool: redis.ConnectionPool,
        consumer_id: str,
        *,
        unacked_key: str,
        unacked_index_key: str,
        queue_of: Callable[[str], str],
        ttl_s: float,
        interval_s: float,
    ) -> None:
        self.consumer_id = consumer_id
        self._client = redis.Redis(connection_pool=pool)
        self._unacked_key = unacked_key
        self._unacked_index_key = unacked_index_key
        self._queue_of = queue_of
        self._ttl_ms = max(1, int(ttl_s * 1000))
        self._interval_s = interval_s
        # Twice the renewal period: a live consumer renews at least once within it.
        self._grace_s = 2 * interval_s
        self._missing_since: dict[str, float] = {}
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    @property
    def in_flight_key(self) -> str:
        return consumer_in_flight_key(self.consumer_id)

    def start(self) -> None:
        """Register the consumer (before it takes any call) and start renewing.

        Raises
        ------
        redis.RedisError
            Redis cannot be reached: the consumer must not take calls unregistered.
        """
        self._renew()
        self._thread = threading.Thread(
            target=self._run, name=f"blueprint-liveness-{self.consumer_id}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop renewing and withdraw the liveness key, so a restorer may act at once.

        What this consumer still holds is restored by the channel's close, or else by the
        next restorer; nothing here can fail the caller.
        """
        self._stopped.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=self._interval_s + 1)
        try:
            self._client.delete(consumer_liveness_key(self.consumer_id))
        except redis.RedisError as error:
            logger.info("consumer %s: liveness key left to expire: %r", self.consumer_id, error)

    # -- the thread ----------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopped.wait(self._interval_s):
            try:
                self._renew()
                self._restore_dead_consumers()
            except Exception as error:  # Redis away, or anything else: try again next round
                if not self._failing:
                    logger.warning("consumer %s: liveness: %r", self.consumer_id, error)
                self._failing = True
            else:
                if self._failing:
                    logger.info("consumer %s: liveness renewed again", self.consumer_id)
                self._failing = False

    def _renew(self) -> None:
        pipe = self._client.pipeline(transaction=False)
        pipe.set(consumer_liveness_key(self.consumer_id), b"1", px=self._ttl_ms)
        pipe.sadd(CONSUMERS_KEY, self.consumer_id)
        pipe.execute()

    def _restore_dead_consumers(self) -> None:
        due = self._dead_consumers()
        if not due:
            return
        lock = self._client.lock(
            RESTORER_LOCK_KEY, timeout=self._ttl_ms / 1000, blocking=False, thread_local=False
        )
        if not lock.acquire(blocking=False):
            return
        try:
            for consumer_id in due:
                self._restore_consumer(consumer_id)
                self._missing_since.pop(consumer_id, None)
        finally:
            try:
                lock.release()
            except LockError:  # expired while restoring: the next restorer goes on
                logger.info("restorer lock expired before its release")

    def _dead_consumers(self) -> list[str]:
        members = (_text(member) for member in self._client.smembers(CONSUMERS_KEY))
        others = [member for member in members if member != self.consumer_id]
        pipe = self._client.pipeline(transaction=False)
        for consumer_id in others:
            pipe.exists(consumer_liveness_key(consumer_id))
        alive = pipe.execute()
        now = time.monotonic()
        missing = {consumer_id for consumer_id, live in zip(others, alive, strict=True) if not live}
        for consumer_id in list(self._missing_since):
            if consumer_id not in missing:
                del self._missing_since[consumer_id]
        for consumer_id in missing:
            self._missing_since.setdefault(consumer_id, now)
        return [c for c in missing if now - self._missing_since[c] >= self._grace_s]

    def _restore_consumer(self, consumer_id: str) -> None:
        in_flight_key = consumer_in_flight_key(consumer_id)
        entries = self._client.hgetall(in_flight_key)
        for tag, source in entries.items():
            restore = functools.partial(self._restore_call, in_flight_key, tag, _text(source))
            self._client.transaction(restore, self._unacked_key)
            fault_point("restore")
        if entries:
            logger.warning(
                "restored %d call(s) of dead consumer %s to their queues", len(entries), consumer_id
            )
        if not self._client.hlen(in_flight_key):
            self._client.srem(CONSUMERS_KEY, consumer_id)

    def _restore_call(self, in_flight_key: str, tag: bytes | str, source: str, pipe: Any) -> None:
        # Runs under WATCH of the unacked hash: a concurrent ack or restore of the same call
        # restarts the transaction, which then finds the record gone and only tidies up.
        record = pipe.hget(self._unacked_key, tag)
        pipe.multi()
        pipe.hdel(in_flight_key, tag)
        if record is None:
            return
        pipe.zrem(self._unacked_index_key, tag)
        pipe.hdel(self._unacked_key, tag)
        payload = json.loads(record)[0]
        renew_delivery(payload)
        # The consuming end of a kombu list is its right: the call goes back to the front.
        pipe.rpush(source, json.dumps(payload))
        pipe.lpush(wake_key(self._queue_of(source)), WAKE_TOKEN)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
