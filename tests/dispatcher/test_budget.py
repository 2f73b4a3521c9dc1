"""The shared concurrency budget, on a real Redis: leases, their expiry, and AIMD."""

from __future__ import annotations

import redis

from dispatcher.budget import ConcurrencyBudget, read_budget
from dispatcher.keys import budget_key
from tests.processes import wait_until

SCOPE = "custom:http://faas.test"
LEASE_S = 30.0


def _budget(redis_url: str, declared: int = 3, **knobs: float) -> ConcurrencyBudget:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    return ConcurrencyBudget(client, SCOPE, declared, recover_s=knobs.get("recover_s", 60))


def test_no_more_leases_than_the_budget_are_granted(redis_url: str) -> None:
    budget = _budget(redis_url)
    leases = [budget.acquire(0, LEASE_S) for _ in range(3)]
    assert all(leases)
    assert budget.acquire(0, LEASE_S) is None
    assert budget.view().in_use == 3


def test_a_released_lease_is_granted_again(redis_url: str) -> None:
    budget = _budget(redis_url, declared=1)
    lease = budget.acquire(0, LEASE_S)
    assert lease is not None
    budget.release(lease)
    assert budget.acquire(0, LEASE_S) is not None


def test_a_waiting_call_gets_the_lease_released_meanwhile(redis_url: str) -> None:
    budget = _budget(redis_url, declared=1)
    held = budget.acquire(0, LEASE_S)
    assert held is not None
    released: list[float] = []

    def sleep(seconds: float) -> None:  # the other worker finishes while this one waits
        if not released:
            budget.release(held)
            released.append(seconds)

    waiting = ConcurrencyBudget(budget._client, SCOPE, 1, recover_s=60, sleep=sleep)
    assert waiting.acquire(5, LEASE_S) is not None
    assert released


def test_a_lease_never_released_expires_after_its_lifetime(redis_url: str) -> None:
    budget = _budget(redis_url, declared=1)
    assert budget.acquire(0, 0.3) is not None  # its worker is killed
    assert budget.acquire(0, LEASE_S) is None
    assert wait_until(lambda: budget.acquire(0, LEASE_S), 5, "the lease to expire")


def test_a_throttle_halves_the_limit_once_per_gap_and_successes_bring_it_back(
    redis_url: str,
) -> None:
    budget = _budget(redis_url, declared=4)
    leases = [budget.acquire(0, LEASE_S) for _ in range(3)]
    assert all(lease is not None for lease in leases)
    for lease in leases:  # three 429s at once: one decrease
        assert lease is not None
        budget.release(lease, throttled=True)
    assert budget.view().limit == 2
    granted = [budget.acquire(0, LEASE_S) for _ in range(3)]
    assert granted[2] is None
    for lease in granted[:2]:
        assert lease is not None
        budget.release(lease)  # 2 + 1/2 + 1/2.5
    limits = []
    for _ in range(4):
        lease = budget.acquire(0, LEASE_S)
        assert lease is not None
        budget.release(lease)
        limits.append(budget.view().limit)
    assert limits[-1] == 4
    assert budget._client.exists(budget_key(SCOPE, "limit")) == 0


def test_a_shrunk_limit_expires_without_further_throttles(redis_url: str) -> None:
    budget = _budget(redis_url, declared=4, recover_s=0.3)
    lease = budget.acquire(0, LEASE_S)
    assert lease is not None
    budget.release(lease, throttled=True)
    assert budget.view().limit == 2
    wait_until(lambda: budget.view().limit == 4, 5, "the declared limit")


def test_the_leases_are_one_set_shared_by_every_client(redis_url: str) -> None:
    one, other = _budget(redis_url, declared=2), _budget(redis_url, declared=2)
    assert one.acquire(0, LEASE_S) and other.acquire(0, LEASE_S)
    assert one.acquire(0, LEASE_S) is None and other.acquire(0, LEASE_S) is None
    view = read_budget(one._client, SCOPE, 2)
    assert (view.in_use, view.limit, view.declared) == (2, 2, 2)
