"""A provider's concurrency budget, shared by every worker on every host through Redis.

A provider scope whose executor declares ``limits.max_account_concurrency`` (an account's or
a namespace's limit: DigitalOcean's 120 per namespace, Lambda's account concurrency, the
reference server's ``max_concurrency``) gets one semaphore: a sorted set of leases scored by
their expiry. A worker takes a lease before it invokes and gives it back after; a lease
expires by itself (the job's function timeout plus ``budget_lease_margin_s``), so a worker
killed while holding one cannot leak capacity for longer than that.

The limit itself adapts (AIMD): a throttle (429) that still happens halves it, at most once
per :data:`DECREASE_GAP_S` (the calls in flight when the provider pushed back all report the
same 429); each success then adds ``1 / limit`` until it is back at the declared figure, and
the shrunk figure expires after ``budget_recover_s`` anyway. Every step is one Lua script on
the server's clock.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dispatcher.keys import budget_key

if TYPE_CHECKING:
    import redis

__all__ = ["DECREASE_GAP_S", "BudgetView", "ConcurrencyBudget", "Lease", "read_budget"]

#: Throttles within this long of a decrease do not decrease the limit again.
DECREASE_GAP_S = 1.0
_POLL_S = 0.02


@dataclass(frozen=True, slots=True)
class Lease:
    """One unit of a budget, held for one invocation."""

    lease_id: str


@dataclass(frozen=True, slots=True)
class BudgetView:
    """A budget as ``status`` shows it."""

    declared: int
    limit: int
    in_use: int


class ConcurrencyBudget:
    """The budget of one provider scope.

    Parameters
    ----------
    declared:
        The provider's limit, as the executor's options declare it.
    recover_s:
        How long a shrunk limit lasts without further throttles before it expires.
    """

    def __init__(
        self,
        client: redis.Redis,
        scope: str,
        declared: int,
        *,
        recover_s: float,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = client
        self._scope = scope
        self._keys = [budget_key(scope, "leases"), budget_key(scope, "limit")]
        self.declared = declared
        self._recover_ms = int(recover_s * 1000)
        self._sleep = sleep
        self._acquire = client.register_script(_ACQUIRE)
        self._release = client.register_script(_RELEASE)

    def acquire(self, wait_s: float, lease_ttl_s: float) -> Lease | None:
        """A lease, waiting up to ``wait_s`` for one; None when none came free in time.

        The lease expires after ``lease_ttl_s`` unless released: longer than the invocation
        it covers may last.

        Raises
        ------
        redis.RedisError
            Redis fails.
        """
        lease = Lease(uuid.uuid4().hex)
        deadline = time.monotonic() + wait_s
        while True:
            granted = self._acquire(
                keys=self._keys, args=[lease.lease_id, self.declared, int(lease_ttl_s * 1000)]
            )
            if granted:
                return lease
            left_s = deadline - time.monotonic()
            if left_s <= 0:
                return None
            # Jittered, so the waiting workers do not ask in lockstep.
            self._sleep(min(left_s, _POLL_S * (0.5 + random.random())))

    def release(self, lease: Lease, *, throttled: bool = False) -> None:
        """Give ``lease`` back; ``throttled`` when the provider answered 429 anyway.

        Raises
        ------
        redis.RedisError
            Redis fails.
        """
        self._release(
            keys=self._keys,
            args=[
                lease.lease_id,
                1 if throttled else 0,
                self.declared,
                self._recover_ms,
                int(DECREASE_GAP_S * 1000),
            ],
        )

    def view(self) -> BudgetView:
        """The budget as it stands; see :func:`read_budget`."""
        return read_budget(self._client, self._scope, self.declared)


def read_budget(client: redis.Redis, scope: str, declared: int) -> BudgetView:
    """The limit now in force and the unexpired leases of ``scope``'s budget.

    Raises
    ------
    redis.RedisError
        Redis fails.
    """
    with client.pipeline(transaction=False) as pipe:
        pipe.time()
        pipe.zrange(budget_key(scope, "leases"), 0, -1, withscores=True)
        pipe.hget(budget_key(scope, "limit"), "limit")
        (seconds, micros), leases, limit = pipe.execute()
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    in_use = sum(1 for _, expires in leases if expires > now_ms)
    return BudgetView(declared, _limit(limit, declared), in_use)


def _limit(value: Any, declared: int) -> int:
    if value is None:
        return declared
    return max(1, min(declared, int(float(value))))


# KEYS: leases zset, limit hash; ARGV: lease id, declared, lease ttl ms. Returns 1 if granted.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local declared = tonumber(ARGV[2])
local limit = tonumber(redis.call('HGET', KEYS[2], 'limit') or ARGV[2])
limit = math.max(1, math.min(declared, math.floor(limit)))
if redis.call('ZCARD', KEYS[1]) >= limit then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""

# KEYS: leases zset, limit hash; ARGV: lease id, throttled, declared, recover ms, gap ms.
_RELEASE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREM', KEYS[1], ARGV[1])
local declared = tonumber(ARGV[3])
local current = redis.call('HMGET', KEYS[2], 'limit', 'cut_at')
local limit = tonumber(current[1] or ARGV[3])
if ARGV[2] == '1' then
  if now - tonumber(current[2] or '0') >= tonumber(ARGV[5]) then
    redis.call('HSET', KEYS[2], 'limit', math.max(1, math.floor(limit / 2)), 'cut_at', now)
    redis.call('PEXPIRE', KEYS[2], ARGV[4])
  end
  return 0
end
if current[1] then
  limit = limit + 1 / limit
  if limit >= declared then
    redis.call('DEL', KEYS[2])
  else
    redis.call('HSET', KEYS[2], 'limit', tostring(limit))
  end
end
return 0
"""
