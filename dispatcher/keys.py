"""Every queue name, task name and Redis key prefix the runner and the workers share.

No name is spelled out anywhere else: producer and worker agree through this module and the
job model only.
"""

from __future__ import annotations

from providers.base import check_job_id

__all__ = [
    "EXECUTE_TASK",
    "HEALTH_TASK",
    "JOB_QUEUE_PREFIX",
    "KEY_PREFIX",
    "WARM_QUEUE",
    "WARM_TASK",
    "job_queue",
]

#: Prefix of every queue that carries job calls.
JOB_QUEUE_PREFIX = "blueprint.jobs."
#: Queue of warm and health tasks, kept apart so they never wait behind a long job queue.
WARM_QUEUE = "blueprint.control"
#: Prefix of our own Redis keys (health status, locks, metrics).
KEY_PREFIX = "blueprint-faas:"

EXECUTE_TASK = "blueprint_faas.execute"
WARM_TASK = "blueprint_faas.warm"
HEALTH_TASK = "blueprint_faas.health"


def job_queue(job_id: int) -> str:
    """The queue of a job id: ``blueprint.jobs.<job_id>``."""
    return f"{JOB_QUEUE_PREFIX}{check_job_id(job_id)}"
