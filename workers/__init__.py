"""Celery workers that run Blueprint jobs locally or forward them to FaaS providers."""

from workers.app import create_beat_app, create_celery_app, served_job_ids
from workers.backoff import compute_backoff_s
from workers.beat import beat_schedule
from workers.entry import Pool, run_beat, run_flower, run_worker
from workers.idempotency import stored_outcome
from workers.tasks import ControlTask, ExecuteTask, register_tasks

__all__ = [  # noqa: RUF022  (grouped by purpose)
    # Building and running a worker, beat and Flower
    "Pool",
    "create_beat_app",
    "create_celery_app",
    "run_beat",
    "run_flower",
    "run_worker",
    "served_job_ids",
    # The tasks and their policies
    "ControlTask",
    "ExecuteTask",
    "beat_schedule",
    "compute_backoff_s",
    "register_tasks",
    "stored_outcome",
]
