"""Celery beat's scheduler, sending only while it holds the beat lock: one schedule at a time.

Any number of ``blueprint-faas beat`` processes may run; the one holding
:data:`~dispatcher.keys.BEAT_LOCK_KEY` (redis-py's own :class:`redis.lock.Lock` on the
broker's Redis, under a ``host:pid:random`` token) sends, the others wait as standbys. The
holder renews the lock from its tick loop, so a beat that stops ticking (killed, wedged)
stops renewing and a standby takes over within the lock's TTL. The heartbeat lives in the
loop rather than in a thread of its own on purpose: a thread could keep renewing for a loop
that no longer sends.

The schedule is held in memory (the entries come from the app definition every start), and
every entry is due at start: a beat that takes over warms and checks at once instead of
waiting a whole period.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from typing import Any

import redis
from celery.beat import Scheduler
from redis.exceptions import LockError

from dispatcher.keys import BEAT_LOCK_KEY

__all__ = ["SingleBeatScheduler"]

logger = logging.getLogger("blueprint_faas.workers.scheduler")


class SingleBeatScheduler(Scheduler):  # type: ignore[misc]
    """A beat scheduler that ticks only while it holds the beat lock.

    Reads ``blueprint_beat_lock_url`` (the broker's Redis) and ``blueprint_beat_lock_ttl_s``
    from the app's configuration (:func:`workers.app.create_beat_app` sets both).
    """

    def __init__(self, app: Any, *args: Any, **kwargs: Any) -> None:
        client = redis.Redis.from_url(
            app.conf.blueprint_beat_lock_url, socket_timeout=5, socket_connect_timeout=5
        )
        self.lock_ttl_s = float(app.conf.blueprint_beat_lock_ttl_s)
        # Not thread-local: Celery may close the scheduler from another thread than tick's.
        self.lock = client.lock(
            BEAT_LOCK_KEY, timeout=self.lock_ttl_s, blocking=False, thread_local=False
        )
        #: Who holds the lock while this beat does: readable when debugging a takeover.
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self._renewed_at: float | None = None  # monotonic time of the last successful hold
        self._closed = False
        super().__init__(app, *args, **kwargs)

    def setup_schedule(self) -> None:
        super().setup_schedule()
        now = self.app.now()
        for entry in self.schedule.values():
            run_every = getattr(entry.schedule, "run_every", None)
            if run_every is not None:
                entry.last_run_at = now - run_every

    @property
    def heartbeat_s(self) -> float:
        """How often the holder renews the lock (and a standby tries it): a third of its TTL."""
        return self.lock_ttl_s / 3

    def tick(self, *args: Any, **kwargs: Any) -> float:
        """Send what is due if this beat holds the lock; return the seconds to sleep."""
        if self._closed:
            # Celery's SIGTERM handler closes the scheduler, then raises SystemExit wherever
            # the loop was; inside a publish, kombu turns it into an error that apply_entry
            # logs and swallows, and the loop would go on (and take the lock again).
            raise SystemExit()
        if not self._holds_lock():
            return self.heartbeat_s
        interval: float = super().tick(*args, **kwargs)
        return min(interval, self.heartbeat_s)

    def close(self) -> None:
        self._closed = True
        try:
            super().close()
        finally:
            # Compare-and-delete: harmless when another beat holds the lock, and it also
            # covers a stop that came between taking the lock and noting it.
            try:
                self.lock.release()
            except LockError:
                pass  # never held, expired or taken over: nothing of ours to release
            except redis.RedisError as error:
                logger.warning("could not release the beat lock: %r", error)
            else:
                logger.info("beat lock %s released", BEAT_LOCK_KEY)
            self._renewed_at = None

    def _holds_lock(self) -> bool:
        now = time.monotonic()
        if self._renewed_at is not None and now - self._renewed_at < self.heartbeat_s:
            return True  # renewed less than a heartbeat ago: the lock has 2/3 of its TTL left
        try:
            held = self._renew_or_take()
        except redis.RedisError as error:
            held = False
            logger.warning("beat lock unreachable, not sending: %r", error)
        if held and self._renewed_at is None:
            logger.info("beat lock %s acquired by %s: scheduling", BEAT_LOCK_KEY, self.token)
        elif not held and self._renewed_at is not None:
            logger.warning("beat lock %s lost by %s: standing by", BEAT_LOCK_KEY, self.token)
        elif not held:
            # Not who holds it: a GET for a log line runs at every log level, and with Redis
            # down it raised out of tick, which Celery's beat loop does not catch.
            logger.debug("beat lock %s held elsewhere or unreachable: standing by", BEAT_LOCK_KEY)
        self._renewed_at = now if held else None
        return held

    def _renew_or_take(self) -> bool:
        """Renew the lock if this beat holds it, else take it if it is free."""
        try:
            return bool(self.lock.reacquire())
        except LockError:
            pass  # not ours (never held, expired, taken over): try to take it
        return bool(self.lock.acquire(token=self.token))
