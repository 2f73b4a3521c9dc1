"""A Redis lock with an owner token, renewed by a heartbeat: who may run a singleton.

``SET key token NX PX ttl`` takes it; the holder renews it (``PEXPIRE`` only if the value is
still its token) more often than it expires, and releases it with a compare-and-delete. A
holder that dies stops renewing, so the lock expires and a standby takes it. Both scripts
compare the token first, so a holder that lost the lock (it stalled past the TTL) can
neither renew nor delete the new holder's lock.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import redis

__all__ = ["RedisLock", "new_token"]

logger = logging.getLogger("blueprint_faas.workers.lock")

_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""


def new_token() -> str:
    """A token naming its holder: ``host:pid:random`` (readable when debugging a takeover)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


class RedisLock:
    """An expiring lock on ``key`` held under a token of this instance.

    Parameters
    ----------
    client:
        The Redis holding the lock.
    key:
        The lock's key.
    ttl_s:
        How long the lock outlives the last acquire or renew.
    token:
        This holder's identity; a new :func:`new_token` by default.
    """

    def __init__(
        self, client: redis.Redis, key: str, ttl_s: float, token: str | None = None
    ) -> None:
        if ttl_s <= 0:
            raise ValueError(f"ttl_s must be positive, got {ttl_s}")
        self._client = client
        self.key = key
        self.ttl_s = ttl_s
        self.token = token or new_token()
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    @property
    def heartbeat_s(self) -> float:
        """How often a holder renews (and a standby retries): a third of the TTL."""
        return self.ttl_s / 3

    def acquire(self) -> bool:
        """Take the lock if it is free; True if this instance holds it now.

        Raises
        ------
        redis.RedisError
            Redis cannot be reached.
        """
        return bool(self._client.set(self.key, self.token, nx=True, px=self._ttl_ms))

    def renew(self) -> bool:
        """Extend the lock if this instance still holds it; True if it does.

        Raises
        ------
        redis.RedisError
            Redis cannot be reached.
        """
        return bool(self._renew(keys=[self.key], args=[self.token, self._ttl_ms]))

    def hold(self) -> bool:
        """Renew the lock, or take it if free: the heartbeat of a holder or a standby.

        Raises
        ------
        redis.RedisError
            Redis cannot be reached.
        """
        return self.renew() or self.acquire()

    def release(self) -> bool:
        """Delete the lock if this instance holds it; True if it did.

        Raises
        ------
        redis.RedisError
            Redis cannot be reached.
        """
        return bool(self._release(keys=[self.key], args=[self.token]))

    def holder(self) -> str | None:
        """The token of the current holder, if any."""
        value = self._client.get(self.key)
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)

    @property
    def _ttl_ms(self) -> int:
        return max(1, int(self.ttl_s * 1000))

    def __repr__(self) -> str:
        return f"RedisLock(key={self.key!r}, ttl_s={self.ttl_s}, token={self.token!r})"
