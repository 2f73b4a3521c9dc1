"""Which jobs run on a FaaS provider, and on which executor.

A lookup from job id to executor, the way httpx picks a transport for a URL. A job id not in
the registry runs locally (or is unknown, which the router decides).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dispatcher.errors import UnknownJob
from dispatcher.jobs import checked_job_id

if TYPE_CHECKING:
    from providers.base import FaasExecutor

__all__ = ["FaasRegistry"]


class FaasRegistry:
    """Maps job ids to the FaaS executors that run them.

    Registering a job id again replaces its executor; the change is visible to every later
    lookup. Safe to share between threads.
    """

    def __init__(self) -> None:
        self._executors: dict[int, FaasExecutor] = {}

    def register(self, job_id: int, executor: FaasExecutor) -> None:
        """Route ``job_id`` to ``executor`` from now on (replacing any earlier entry)."""
        checked_job_id(job_id)
        self._executors[job_id] = executor

    def get(self, job_id: int) -> FaasExecutor:
        """The executor of ``job_id``; raises UnknownJob when it has none."""
        try:
            return self._executors[job_id]
        except KeyError:
            raise UnknownJob(job_id) from None

    def job_ids(self) -> list[int]:
        """The registered job ids, sorted."""
        return sorted(self._executors)

    def __len__(self) -> int:
        return len(self._executors)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._executors
