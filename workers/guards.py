"""What stands between a worker and its provider: the shared circuit breaker and budget.

:func:`guarded_invoke` is the FaaS step of the execute task: take a lease of the provider
scope's concurrency budget (when its executor declares ``max_account_concurrency``), ask its
breaker, invoke, then report the outcome to both. One :class:`ProviderGuards` per worker
process holds a breaker and a budget per scope, on the broker's Redis, so every worker on
every host sees the same ones.

The guards protect the provider; they must not take the calls down with them. When Redis
cannot answer a guard's question the call goes ahead unguarded (logged), as it would have
before the guards existed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from dispatcher._redis import broker_redis
from dispatcher.breaker import Admission, BreakerPolicy, BreakerState, CircuitBreaker
from dispatcher.budget import ConcurrencyBudget, Lease
from providers.errors import ErrorKind, FaasError
from workers import metrics

if TYPE_CHECKING:
    import redis

    from dispatcher.settings import Settings
    from providers.base import FaasExecutor, FaasResponse

__all__ = ["CircuitOpen", "NoCapacity", "ProviderGuards", "counts_against_breaker"]

logger = logging.getLogger("blueprint_faas.workers.guards")

_T = TypeVar("_T")
#: How long a breaker seen closed is taken as closed without asking Redis again.
_CLOSED_FRESH_S = 0.05
_CLOSED = Admission(allowed=True, state=BreakerState.CLOSED)
#: The lease of a call sent while the budget could not be asked (Redis down).
_UNGUARDED = Lease("unguarded")


class CircuitOpen(Exception):
    """The provider's breaker is open: the call was not sent."""

    def __init__(self, provider: str, retry_after_s: float) -> None:
        super().__init__(f"the circuit breaker of {provider} is open; retry in {retry_after_s}s")
        self.provider = provider
        self.retry_after_s = retry_after_s


class NoCapacity(Exception):
    """No lease of the provider's budget came free within ``budget_wait_s``."""

    def __init__(self, scope: str) -> None:
        super().__init__(f"no {scope} capacity within the wait")
        self.scope = scope


def counts_against_breaker(error: FaasError) -> bool:
    """A transient failure other than a throttle says the provider is unwell."""
    return error.retryable and error.kind is not ErrorKind.THROTTLED


class ProviderGuards:
    """The breakers and budgets of one worker process, one of each per provider scope."""

    def __init__(self, settings: Settings, client: redis.Redis | None) -> None:
        self._settings = settings
        self._client = client
        self._breakers: dict[str, CircuitBreaker] = {}
        self._budgets: dict[str, ConcurrencyBudget] = {}
        #: When this process last saw each scope's breaker closed (monotonic seconds).
        self._closed_at: dict[str, float] = {}
        self._lock = threading.Lock()

    @classmethod
    def for_settings(cls, settings: Settings) -> ProviderGuards:
        """Guards on the broker's Redis; none at all in embedded mode (no shared Redis)."""
        return cls(settings, broker_redis(settings))

    def invoke(self, executor: FaasExecutor, job_id: int, payload: bytes) -> FaasResponse:
        """Invoke ``job_id`` on ``executor`` within its scope's budget and breaker.

        Raises
        ------
        NoCapacity
            The budget stayed spent for ``budget_wait_s``; nothing was sent.
        CircuitOpen
            The breaker is open (or half-open with its probes out); nothing was sent.
        FaasError
            The invocation failed; the outcome is reported to the breaker and the budget.
        """
        timeout_s = executor.job_config(job_id).timeout_secs
        budget = self._budget(executor)
        lease: Lease | None = None
        if budget is not None:
            unguarded: Lease | None = _UNGUARDED
            lease = self._guarded(
                lambda: budget.acquire(
                    self._settings.budget_wait_s,
                    timeout_s + self._settings.budget_lease_margin_s,
                ),
                unguarded,
            )
            if lease is None:
                raise NoCapacity(executor.scope)
        breaker = self._breaker(executor, timeout_s)
        admission = None
        if breaker is not None:
            admission = self._admit(executor.scope, breaker)
            if admission is not None:
                metrics.set_breaker_state(executor.scope, admission.state.gauge)
            if admission is not None and not admission.allowed:
                self._release(budget, lease)
                raise CircuitOpen(executor.provider_name, admission.retry_after_s)
        try:
            response = executor.invoke_with_metrics(job_id, payload)
        except FaasError as error:
            self._release(budget, lease, throttled=error.kind is ErrorKind.THROTTLED)
            self._record(executor, breaker, admission, failed=counts_against_breaker(error))
            raise
        except BaseException:
            self._release(budget, lease)
            raise
        self._release(budget, lease)
        self._record(executor, breaker, admission, failed=False)
        return response

    def _admit(self, scope: str, breaker: CircuitBreaker) -> Admission | None:
        # A breaker this process saw closed moments ago is taken as still closed: at a high
        # call rate that halves the Redis round trips of a guarded call, and an opening by
        # another host is seen at most _CLOSED_FRESH_S late.
        with self._lock:
            seen_closed = self._closed_at.get(scope, float("-inf"))
        if time.monotonic() - seen_closed < _CLOSED_FRESH_S:
            return _CLOSED
        admission = self._guarded(breaker.admit, None)
        if admission is not None and admission.state is BreakerState.CLOSED:
            self._seen_closed(scope)
        return admission

    def _seen_closed(self, scope: str) -> None:
        with self._lock:
            self._closed_at[scope] = time.monotonic()

    def _budget(self, executor: FaasExecutor) -> ConcurrencyBudget | None:
        declared = executor.limits.max_account_concurrency
        if self._client is None or declared is None:
            return None
        with self._lock:
            budget = self._budgets.get(executor.scope)
            if budget is None:
                budget = self._budgets[executor.scope] = ConcurrencyBudget(
                    self._client,
                    executor.scope,
                    declared,
                    recover_s=self._settings.budget_recover_s,
                )
            return budget

    def _breaker(self, executor: FaasExecutor, timeout_s: float) -> CircuitBreaker | None:
        if self._client is None:
            return None
        with self._lock:
            breaker = self._breakers.get(executor.scope)
            if breaker is None:
                # A probe is lost once it has had its whole function timeout and the margin.
                probe_timeout_s = timeout_s + self._settings.time_limit_margin_s
                policy = BreakerPolicy.from_settings(self._settings, probe_timeout_s)
                breaker = self._breakers[executor.scope] = CircuitBreaker(
                    self._client, executor.scope, policy
                )
            return breaker

    def _release(
        self, budget: ConcurrencyBudget | None, lease: Lease | None, *, throttled: bool = False
    ) -> None:
        if budget is None or lease is None or lease is _UNGUARDED:
            return
        self._guarded(lambda: budget.release(lease, throttled=throttled), None)

    def _record(
        self,
        executor: FaasExecutor,
        breaker: CircuitBreaker | None,
        admission: Admission | None,
        *,
        failed: bool,
    ) -> None:
        if breaker is None or admission is None:
            return
        state = self._guarded(lambda: breaker.record(admission, failed=failed), None)
        if state is not None:
            metrics.set_breaker_state(executor.scope, state.gauge)
        if state is BreakerState.CLOSED and not failed:
            self._seen_closed(executor.scope)
        else:
            with self._lock:
                self._closed_at.pop(executor.scope, None)

    def _guarded(self, ask: Callable[[], _T], unguarded: _T) -> _T:
        import redis

        try:
            return ask()
        except redis.RedisError as error:
            logger.warning("a provider guard cannot reach Redis (%r); going on unguarded", error)
            return unguarded
