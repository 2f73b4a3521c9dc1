"""Where a job's calls run: the job's placement policy and the decision made at publish time.

Four policies (:class:`Placement`):

- ``local``: the job's local handler, on the workers serving its queue (today's local job);
- ``faas``: the job's executor (today's FaaS job);
- ``local_with_faas_overflow``: local while the job's local backlog is small; past
  ``overflow_backlog_high`` waiting calls, new calls go to the job's FaaS lane until the
  backlog is back to ``overflow_backlog_low`` (hysteresis: placement does not flap);
- ``faas_with_local_fallback``: the executor, unless the provider's circuit breaker is open
  (:mod:`dispatcher.breaker`); then the local handler.

A job placed on both sides has two queues: its own, ``blueprint.jobs.<id>``, for its home
side (local for overflow, FaaS for fallback), and a lane ``blueprint.jobs.<id>.faas`` or
``.local`` for the other side. The publisher (:class:`Placer`) picks the queue; the worker
knows from the queue a call came from which side runs it and why (:func:`route_of_queue`), so
the task message is the same on every path. A call already queued on the FaaS side when the
breaker opens is run by its worker's local handler (reason ``fallback``), never sent.

The backlog is read with one ``LLEN`` of the job's queue shared by every call published over
``overflow_sample_s``; calls this publisher sent since that read are added to it, so a burst
published within one interval is still seen.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from dispatcher.keys import job_queue, lane_queue

if TYPE_CHECKING:
    import redis

    from dispatcher.app import Blueprint

__all__ = [
    "Lane",
    "Placement",
    "PlacementReason",
    "Placer",
    "Route",
    "job_queues",
    "placement_problems",
    "route_of_queue",
]


class Placement(StrEnum):
    """A job's placement policy."""

    LOCAL = "local"
    FAAS = "faas"
    LOCAL_WITH_FAAS_OVERFLOW = "local_with_faas_overflow"
    FAAS_WITH_LOCAL_FALLBACK = "faas_with_local_fallback"

    @property
    def home(self) -> Lane:
        """The side that runs the job's calls when nothing is wrong."""
        return Lane.FAAS if self in _FAAS_HOMED else Lane.LOCAL

    @property
    def spare(self) -> Lane | None:
        """The other side, for a policy that uses both; None otherwise."""
        return _SPARE.get(self)


class Lane(StrEnum):
    """A side a call runs on: a local handler or the job's executor."""

    LOCAL = "local"
    FAAS = "faas"


class PlacementReason(StrEnum):
    """Why a call ran where it ran (``JobResult.placement_reason``)."""

    #: Where its policy puts it.
    POLICY = "policy"
    #: On FaaS, because the local backlog was over the overflow threshold.
    OVERFLOW = "overflow"
    #: Locally, because the provider's circuit breaker was open.
    FALLBACK = "fallback"


_FAAS_HOMED = frozenset({Placement.FAAS, Placement.FAAS_WITH_LOCAL_FALLBACK})
_SPARE = {
    Placement.LOCAL_WITH_FAAS_OVERFLOW: Lane.FAAS,
    Placement.FAAS_WITH_LOCAL_FALLBACK: Lane.LOCAL,
}


@dataclass(frozen=True, slots=True)
class Route:
    """Where one call goes: its queue, the side that runs it, and why."""

    queue: str
    lane: Lane
    reason: PlacementReason


def job_queues(job_id: int, placement: Placement) -> dict[Lane, str]:
    """The queues of a job: its own for the home side, plus a lane for the spare side."""
    queues = {placement.home: job_queue(job_id)}
    if placement.spare is not None:
        queues[placement.spare] = lane_queue(job_id, placement.spare)
    return queues


def route_of_queue(job_id: int, placement: Placement, queue: str | None) -> Route:
    """The route a call delivered from ``queue`` took (the job's own queue when unknown)."""
    spare = placement.spare
    if spare is not None and queue == lane_queue(job_id, spare):
        reason = PlacementReason.OVERFLOW if spare is Lane.FAAS else PlacementReason.FALLBACK
        return Route(queue, spare, reason)
    return Route(job_queue(job_id), placement.home, PlacementReason.POLICY)


def placement_problems(
    placements: Mapping[int, Placement], local_jobs: Iterable[int], faas_jobs: Iterable[int]
) -> list[str]:
    """What is wrong with ``placements`` given the jobs that have handlers and executors.

    A policy needs what it runs on: ``local`` a handler, ``faas`` an executor, the two
    others both.
    """
    local, faas = set(local_jobs), set(faas_jobs)
    problems = []
    for job_id, placement in sorted(placements.items()):
        missing = []
        if Lane.LOCAL in (placement.home, placement.spare) and job_id not in local:
            missing.append("a local handler")
        if Lane.FAAS in (placement.home, placement.spare) and job_id not in faas:
            missing.append("a FaaS executor")
        if missing:
            problems.append(f"job {job_id}: placement {placement} needs {' and '.join(missing)}")
    return problems


class Placer:
    """The publisher's decision: which queue each call of a job goes to. Thread-safe.

    Parameters
    ----------
    blueprint:
        The app: each job's placement and executor, and the overflow and breaker settings.
    broker:
        The broker's Redis (queue lengths, breaker states); None (embedded mode) keeps every
        call on its job's home side.
    clock:
        Monotonic seconds (tests).
    """

    def __init__(
        self,
        blueprint: Blueprint,
        broker: redis.Redis | None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._blueprint = blueprint
        self._broker = broker
        self._clock = clock
        self._backlogs: dict[int, _Backlog] = {}
        self._breakers: dict[str, tuple[float, bool]] = {}
        self._lock = threading.Lock()

    def route(self, job_id: int) -> Route:
        """The route of the next call of ``job_id``.

        Raises
        ------
        redis.RedisError
            The broker's Redis fails while a backlog or a breaker is read.
        """
        placement = self._blueprint.placement(job_id)
        home = Route(job_queue(job_id), placement.home, PlacementReason.POLICY)
        if self._broker is None or placement.spare is None:
            return home
        if placement is Placement.LOCAL_WITH_FAAS_OVERFLOW:
            if self._overflowing(job_id):
                return Route(lane_queue(job_id, Lane.FAAS), Lane.FAAS, PlacementReason.OVERFLOW)
            return home
        if self._breaker_open(self._blueprint.registry.get(job_id).scope):
            return Route(lane_queue(job_id, Lane.LOCAL), Lane.LOCAL, PlacementReason.FALLBACK)
        return home

    def _overflowing(self, job_id: int) -> bool:
        settings = self._blueprint.settings
        now = self._clock()
        with self._lock:
            backlog = self._backlogs.setdefault(job_id, _Backlog())
            if now - backlog.read_at >= settings.overflow_sample_s:
                assert self._broker is not None
                backlog.length = int(self._broker.llen(job_queue(job_id)))  # type: ignore[arg-type]
                backlog.read_at = now
                backlog.sent_since = 0
            waiting = backlog.length + backlog.sent_since
            if backlog.overflowing and waiting <= settings.overflow_backlog_low:
                backlog.overflowing = False
            elif not backlog.overflowing and waiting >= settings.overflow_backlog_high:
                backlog.overflowing = True
            if not backlog.overflowing:
                backlog.sent_since += 1
            return backlog.overflowing

    def _breaker_open(self, scope: str) -> bool:
        from dispatcher.breaker import read_breaker

        now = self._clock()
        with self._lock:
            read_at, is_open = self._breakers.get(scope, (float("-inf"), False))
            if now - read_at < self._blueprint.settings.overflow_sample_s:
                return is_open
            assert self._broker is not None
            is_open = read_breaker(self._broker, scope).is_open
            self._breakers[scope] = (now, is_open)
            return is_open


@dataclass(slots=True)
class _Backlog:
    """What a publisher knows of one job's local queue."""

    length: int = 0
    read_at: float = float("-inf")
    #: Calls this publisher put on the local queue since ``read_at``.
    sent_since: int = 0
    overflowing: bool = False
