"""The Redis broker transport of workers and runners: kombu's, made cheaper per call.

Selected for ``redis://`` brokers by :meth:`dispatcher.settings.Settings.celery_connection_config`.

**One client per channel.** kombu's Redis channel builds a new ``redis.Redis`` around its
connection pool for every acknowledgement and every delivered message it records as
unacknowledged. Building one costs about 0.1 ms of Python (redis-py fills a table of response
callbacks each time): a worker with late acks paid it twice per call on its consumer loop, the
one thread every call goes through, and a runner once per published call. A ``redis.Redis``
is safe to share between threads and green threads (each command borrows a connection from
the pool), so the channel keeps one, rebuilt only when the channel replaces its pool after a
reconnect.

**Restores on a clock.** Without Celery's event loop (the gevent pool) kombu looks for
unacknowledged calls to restore after every poll that delivered nothing, not on a timer, and
``unacked_restore_throttle`` 1 (settings) makes each look a Redis lock and scan. A busy green
worker's polls end every time a call is acknowledged (:mod:`workers._wake`), so it scanned once
per call. The poller here scans at most twice per ``unacked_restore_interval``, which is what
the event loop's timer does anyway.
"""

from __future__ import annotations

import time
from typing import Any

from kombu.transport import redis as kombu_redis

__all__ = ["Transport"]


class _Channel(kombu_redis.Channel):  # type: ignore[misc]
    _shared_client: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:
            return super()._create_client(asynchronous=True)
        client = self._shared_client
        if client is None or client.connection_pool is not self.pool:
            client = self._shared_client = super()._create_client()
        return client


class _Poller(kombu_redis.MultiChannelPoller):  # type: ignore[misc]
    def __init__(self, restore_interval_s: float) -> None:
        super().__init__()
        self._restore_gap_s = restore_interval_s / 2
        self._restored_at = -float("inf")

    def maybe_restore_messages(self) -> Any:
        now = time.monotonic()
        if now - self._restored_at < self._restore_gap_s:
            return None
        self._restored_at = now
        return super().maybe_restore_messages()


class Transport(kombu_redis.Transport):  # type: ignore[misc]
    """kombu's Redis transport with shared channel clients and restores on a clock."""

    Channel = _Channel

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        options = getattr(self.client, "transport_options", {})
        interval_s = options.get("unacked_restore_interval", _Channel.unacked_restore_interval)
        poller = _Poller(interval_s if interval_s > 0 else _Channel.unacked_restore_interval)
        self.cycle = poller  # type: ignore[assignment]  # kombu declares it None
