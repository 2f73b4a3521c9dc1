"""A circuit breaker per provider scope, its state in Redis so every worker on every host shares it.

closed → open after ``breaker_failures`` consecutive transient failures, or when the failure
rate of the current window (``breaker_window_s``, at least ``breaker_min_calls`` calls)
reaches ``breaker_failure_rate``; open for ``breaker_cooldown_s``; then half-open, when up
to ``breaker_probes`` calls go through as probes: one failure opens it again, that many
successes close it.

Each transition is one Lua script run with the server's clock (``TIME``), so hosts with
skewed clocks agree and two workers never both move the breaker. Nothing wedges it: the
hash expires (``_ttl_ms``) a while after its last write; probes that never report (their
worker died) stop counting at their deadline, when new probes are let through.

Only transient provider failures count (transport, timeout, 5xx infrastructure); a throttle
is the concurrency budget's business (:mod:`dispatcher.budget`) and a function error is the
job's own, which says the provider is up.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from dispatcher.keys import breaker_key

if TYPE_CHECKING:
    import redis

    from dispatcher.settings import Settings

__all__ = [
    "Admission",
    "BreakerPolicy",
    "BreakerState",
    "BreakerView",
    "CircuitBreaker",
    "read_breaker",
]


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"

    @property
    def gauge(self) -> int:
        """The Prometheus gauge value: 0 closed, 1 half-open, 2 open."""
        return _GAUGE[self]


_GAUGE = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """When a breaker opens, for how long, and how many probes close it."""

    failures: int = 5
    failure_rate: float = 0.5
    window_s: float = 30.0
    min_calls: int = 20
    cooldown_s: float = 30.0
    probes: int = 1
    #: A probe that has not reported after this long no longer holds its place.
    probe_timeout_s: float = 60.0

    @classmethod
    def from_settings(cls, settings: Settings, probe_timeout_s: float) -> BreakerPolicy:
        return cls(
            failures=settings.breaker_failures,
            failure_rate=settings.breaker_failure_rate,
            window_s=settings.breaker_window_s,
            min_calls=settings.breaker_min_calls,
            cooldown_s=settings.breaker_cooldown_s,
            probes=settings.breaker_probes,
            probe_timeout_s=probe_timeout_s,
        )

    @property
    def _ttl_ms(self) -> int:
        return int(2000 * max(self.window_s, self.cooldown_s + self.probe_timeout_s))


@dataclass(frozen=True, slots=True)
class Admission:
    """Whether a call may be sent now; when not, how long until the breaker may let one by."""

    allowed: bool
    state: BreakerState
    #: The call is one of the half-open breaker's probes.
    probe: bool = False
    retry_after_s: float = 0.0


@dataclass(frozen=True, slots=True)
class BreakerView:
    """A breaker as ``status`` and the publisher see it."""

    state: BreakerState
    #: Seconds of cool-down left while open.
    cooldown_left_s: float = 0.0
    consecutive_failures: int = 0

    @property
    def is_open(self) -> bool:
        return self.state is BreakerState.OPEN and self.cooldown_left_s > 0


class CircuitBreaker:
    """The breaker of one provider scope (:attr:`providers.base.FaasExecutor.scope`)."""

    def __init__(self, client: redis.Redis, scope: str, policy: BreakerPolicy) -> None:
        self._client = client
        self._scope = scope
        self._key = breaker_key(scope)
        self._policy = policy
        self._admit = client.register_script(_ADMIT)
        self._record = client.register_script(_RECORD)

    def admit(self) -> Admission:
        """Ask to send one call; a half-open breaker lets a bounded number of probes by.

        Raises
        ------
        redis.RedisError
            Redis fails.
        """
        policy = self._policy
        allowed, state, wait_ms = self._admit(
            keys=[self._key],
            args=[_ms(policy.probe_timeout_s), policy.probes, policy._ttl_ms],
        )
        state = BreakerState(_text(state))
        return Admission(
            allowed=bool(allowed),
            state=state,
            probe=bool(allowed) and state is BreakerState.HALF_OPEN,
            retry_after_s=int(wait_ms) / 1000,
        )

    def record(self, admission: Admission, *, failed: bool) -> BreakerState:
        """Report the outcome of an admitted call; returns the state after it.

        Raises
        ------
        redis.RedisError
            Redis fails.
        """
        policy = self._policy
        state = self._record(
            keys=[self._key],
            args=[
                1 if failed else 0,
                1 if admission.probe else 0,
                policy.failures,
                policy.failure_rate,
                policy.min_calls,
                _ms(policy.window_s),
                _ms(policy.cooldown_s),
                policy.probes,
                policy._ttl_ms,
            ],
        )
        return BreakerState(_text(state))

    def view(self) -> BreakerView:
        """The breaker as it stands; see :func:`read_breaker`."""
        return read_breaker(self._client, self._scope)


def read_breaker(client: redis.Redis, scope: str) -> BreakerView:
    """The breaker of ``scope`` as it stands (one ``HMGET`` and the server's ``TIME``).

    Raises
    ------
    redis.RedisError
        Redis fails.
    """
    with client.pipeline(transaction=False) as pipe:
        pipe.hmget(breaker_key(scope), ["state", "open_until", "consecutive"])
        pipe.time()
        (state, open_until, consecutive), (seconds, micros) = pipe.execute()
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    parsed = BreakerState(_text(state)) if state else BreakerState.CLOSED
    left_s = 0.0
    if parsed is BreakerState.OPEN:
        left_s = max(0, int(open_until or 0) - now_ms) / 1000
    return BreakerView(parsed, left_s, int(consecutive or 0))


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# KEYS[1] the hash; ARGV: probe timeout ms, probes, ttl ms. Returns {allowed, state, wait ms}.
_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local h = redis.call('HMGET', KEYS[1], 'state', 'open_until', 'probes', 'probe_deadline')
local state = h[1] or 'closed'
if state == 'closed' then
  return {1, 'closed', 0}
end
if state == 'open' then
  local open_until = tonumber(h[2]) or 0
  if now < open_until then
    return {0, 'open', open_until - now}
  end
  state = 'half_open'
  h[3] = '0'
  h[4] = tostring(now + tonumber(ARGV[1]))
  redis.call('HSET', KEYS[1], 'state', state, 'probes', 0, 'probe_ok', 0,
             'probe_deadline', h[4])
end
local probes = tonumber(h[3]) or 0
local deadline = tonumber(h[4]) or 0
if now >= deadline then
  -- probes that never reported (their worker died) no longer hold their places
  probes = 0
  deadline = now + tonumber(ARGV[1])
  redis.call('HSET', KEYS[1], 'probes', 0, 'probe_deadline', deadline)
end
if probes < tonumber(ARGV[2]) then
  redis.call('HINCRBY', KEYS[1], 'probes', 1)
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return {1, 'half_open', 0}
end
return {0, 'half_open', deadline - now}
"""

# KEYS[1] the hash; ARGV: failed, probe, failures, rate, min calls, window ms, cooldown ms,
# probes, ttl ms. Returns the state after the outcome.
_RECORD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local failed = ARGV[1] == '1'
local key = KEYS[1]
local state = redis.call('HGET', key, 'state') or 'closed'
local function open()
  redis.call('DEL', key)
  redis.call('HSET', key, 'state', 'open', 'open_until', now + tonumber(ARGV[7]),
             'opened_at', now)
  redis.call('PEXPIRE', key, ARGV[9])
  return 'open'
end
if state == 'open' then
  return 'open'  -- a late outcome of a call sent before it opened
end
if state == 'half_open' then
  if ARGV[2] ~= '1' then
    return state  -- not a probe: sent before the breaker opened
  end
  if failed then
    return open()
  end
  redis.call('HINCRBY', key, 'probes', -1)
  if redis.call('HINCRBY', key, 'probe_ok', 1) >= tonumber(ARGV[8]) then
    redis.call('DEL', key)
    return 'closed'
  end
  return state
end
local start = tonumber(redis.call('HGET', key, 'window_start') or '0')
if now - start >= tonumber(ARGV[6]) then
  redis.call('HSET', key, 'window_start', now, 'calls', 0, 'failed', 0)
end
local calls = redis.call('HINCRBY', key, 'calls', 1)
if not failed then
  redis.call('HSET', key, 'consecutive', 0)
  redis.call('PEXPIRE', key, ARGV[9])
  return 'closed'
end
local consecutive = redis.call('HINCRBY', key, 'consecutive', 1)
local failures = redis.call('HINCRBY', key, 'failed', 1)
if consecutive >= tonumber(ARGV[3])
   or (calls >= tonumber(ARGV[5]) and failures >= tonumber(ARGV[4]) * calls) then
  return open()
end
redis.call('PEXPIRE', key, ARGV[9])
return 'closed'
"""
