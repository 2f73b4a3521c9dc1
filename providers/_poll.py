"""Waiting for a remote condition: a deadline, backoff with jitter, and the server's Retry-After.

Long-running work on the platforms answers "not yet" and expects to be asked again: a GCP
Operation until ``done``, an Azure async operation until its status leaves ``InProgress``
(waiting ``Retry-After`` between polls), an OpenWhisk activation until its record exists (404
until then). A provider writes one *step* that asks once and returns either the result or
:class:`Pending`; :func:`poll_until` runs it until it returns a result, the step raises (a
failed operation is the step's to raise), or the deadline passes, which raises
:class:`~providers.errors.FaasTimeout` saying what was awaited and what was last seen.

The wait between steps is ``first_delay_s``, multiplied by ``multiplier`` after each step up
to ``max_delay_s``, less a random part of up to ``jitter`` of it (so many workers polling the
same API spread out). A step's ``retry_after_s`` replaces it, uncapped (the server knows) but
floored at ``first_delay_s``, so ``Retry-After: 0`` cannot make a busy loop. No wait runs past
the deadline: the last one ends at it, for one last step. Time comes from an injectable
:class:`Clock`, so tests do not wait.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from providers.errors import FaasTimeout

__all__ = [
    "DEFAULT_POLL_POLICY",
    "SYSTEM_CLOCK",
    "Clock",
    "Pending",
    "PollPolicy",
    "poll_until",
]

Result = TypeVar("Result")


class Clock(Protocol):
    """Where a poll reads the time and waits."""

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class _SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def __repr__(self) -> str:
        return "SYSTEM_CLOCK"


SYSTEM_CLOCK: Clock = _SystemClock()


@dataclass(frozen=True, slots=True)
class PollPolicy:
    """How long to wait for a condition, and how often to ask.

    Parameters
    ----------
    timeout_s:
        The deadline, from the first step.
    first_delay_s:
        The wait after the first step, and the floor of a server's Retry-After.
    max_delay_s:
        The longest computed wait between two steps; a server's Retry-After may ask for more,
        and gets it (within the deadline).
    multiplier:
        Growth of the wait after each step.
    jitter:
        Up to this fraction of each computed wait is taken off at random (0 for none).

    Raises
    ------
    ValueError
        A value is out of range.
    """

    timeout_s: float
    first_delay_s: float = 1.0
    max_delay_s: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be positive, got {self.timeout_s}")
        if not 0 < self.first_delay_s <= self.max_delay_s:
            raise ValueError("first_delay_s must be positive and at most max_delay_s")
        if self.multiplier < 1:
            raise ValueError(f"multiplier must be at least 1, got {self.multiplier}")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), got {self.jitter}")

    def delay_s(self, step: int, *, random_fraction: float) -> float:
        """The wait after step ``step`` (0 for the first), ``random_fraction`` in [0, 1)."""
        base = min(self.max_delay_s, self.first_delay_s * self.multiplier**step)
        return base * (1 - self.jitter * random_fraction)


#: Ten minutes, the order of a Cloud Functions build or an ARM site creation.
DEFAULT_POLL_POLICY = PollPolicy(timeout_s=600.0)


@dataclass(frozen=True, slots=True)
class Pending:
    """What a step returns while the condition does not hold yet.

    Parameters
    ----------
    seen:
        What the step saw (``InProgress``, ``stage BUILD``), for the timeout's message; it
        must hold no secret.
    retry_after_s:
        The server's ``Retry-After``, when it sent one.
    """

    seen: str | None = None
    retry_after_s: float | None = None


def poll_until(
    step: Callable[[], Result | Pending],
    *,
    what: str,
    provider: str,
    policy: PollPolicy = DEFAULT_POLL_POLICY,
    clock: Clock = SYSTEM_CLOCK,
    random_fraction: Callable[[], float] = random.random,
) -> Result:
    """Run ``step`` until it returns something other than :class:`Pending`, and return it.

    Parameters
    ----------
    step:
        Asks once. Whatever it raises goes through at once: a failed operation is not
        something to wait out.
    what:
        What is awaited, for the timeout's message: "operation operations/op-1 to finish".
    provider:
        ``provider_name`` put on the timeout.
    policy:
        The deadline and the waits.
    clock, random_fraction:
        Time and randomness (tests pass their own).

    Raises
    ------
    FaasTimeout
        The deadline passed with the condition still pending; retryable, with the last
        Retry-After the server sent.
    """
    started = clock.monotonic()
    deadline = started + policy.timeout_s
    steps = 0
    while True:
        outcome = step()
        if not isinstance(outcome, Pending):
            return outcome
        remaining_s = deadline - clock.monotonic()
        if remaining_s <= 0:
            raise _timeout(what, provider, outcome, steps + 1, clock.monotonic() - started)
        if outcome.retry_after_s is not None:
            wait_s = max(policy.first_delay_s, outcome.retry_after_s)
        else:
            wait_s = policy.delay_s(steps, random_fraction=random_fraction())
        clock.sleep(min(wait_s, remaining_s))
        steps += 1


def _timeout(what: str, provider: str, last: Pending, steps: int, waited_s: float) -> FaasTimeout:
    seen = f"; last seen: {last.seen}" if last.seen else ""
    return FaasTimeout(
        f"gave up waiting for {what} after {waited_s:.1f} s and {steps} polls{seen}",
        provider=provider,
        retry_after_s=last.retry_after_s,
    )
