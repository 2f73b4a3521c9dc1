"""Celery workers that run Blueprint jobs locally or forward them to FaaS providers."""

from workers.app import create_celery_app, served_job_ids
from workers.backoff import compute_backoff_s
from workers.entry import Pool, run_worker
from workers.idempotency import stored_outcome
from workers.tasks import ExecuteTask, register_tasks

__all__ = [  # noqa: RUF022  (grouped by purpose, as STYLE.md asks)
    # Building and running a worker
    "Pool",
    "create_celery_app",
    "run_worker",
    "served_job_ids",
    # The execute task and its policies
    "ExecuteTask",
    "compute_backoff_s",
    "register_tasks",
    "stored_outcome",
]
