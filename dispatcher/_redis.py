"""The Redis clients outside Celery's: the result backend's (health hashes, the invocation
ledger) and the broker's (queue lengths, breakers and concurrency budgets)."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import redis

    from dispatcher.settings import Settings

__all__ = ["REDIS_SCHEMES", "broker_redis", "operations_redis"]

REDIS_SCHEMES = frozenset({"redis", "rediss", "unix"})
_SOCKET_TIMEOUT_S = 5.0


def operations_redis(settings: Settings) -> redis.Redis | None:
    """A client of the result backend's Redis, or None when results are not kept in Redis.

    Workers write health and ledger entries with their result backend's client (the broker's
    Redis unless a separate backend is configured), so that is where they are read from. No
    connection is made until the first command.
    """
    return _client(settings.resolved_result_backend)


def broker_redis(settings: Settings) -> redis.Redis | None:
    """A client of the broker's Redis, or None when the broker is not Redis (embedded mode).

    Job queues live there, and so do the state every host shares about providers (circuit
    breakers, concurrency budgets): wherever calls can be published, that Redis is up.
    """
    return _client(settings.resolved_broker_url)


def _client(url: str) -> redis.Redis | None:
    if urlsplit(url).scheme not in REDIS_SCHEMES:
        return None
    import redis

    return redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=_SOCKET_TIMEOUT_S,
        socket_connect_timeout=_SOCKET_TIMEOUT_S,
    )
