"""The beat schedule, as data: what ``blueprint-faas beat`` sends, and how often.

For every FaaS job of the blueprint:

- a health task every ``health_interval_s``;
- a warm task every ``warm_interval_s`` (default 5 minutes) asking for ``warm_instances``
  instances, when the job's config sets ``keep_warm``.

Both go to the control queue and expire after one period: a warm or health message that
waited that long is stale, and the next one is already on its way.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from dispatcher.keys import HEALTH_TASK, WARM_QUEUE, WARM_TASK

if TYPE_CHECKING:
    from dispatcher.app import Blueprint

__all__ = ["beat_schedule", "health_entry_name", "warm_entry_name"]


def warm_entry_name(job_id: int) -> str:
    return f"warm-job-{job_id}"


def health_entry_name(job_id: int) -> str:
    return f"health-job-{job_id}"


def beat_schedule(blueprint: Blueprint) -> dict[str, dict[str, Any]]:
    """Celery's ``beat_schedule`` for ``blueprint``: warm and health entries by name.

    Raises
    ------
    ConfigError
        The settings cannot be read (see :attr:`dispatcher.app.Blueprint.settings`).
    """
    settings = blueprint.settings
    schedule: dict[str, dict[str, Any]] = {}
    for job_id in blueprint.registry.job_ids():
        executor = blueprint.registry.get(job_id)
        if executor.job_config(job_id).keep_warm:
            schedule[warm_entry_name(job_id)] = _entry(
                WARM_TASK, (job_id, settings.warm_instances), settings.warm_interval_s
            )
        schedule[health_entry_name(job_id)] = _entry(
            HEALTH_TASK, (job_id,), settings.health_interval_s
        )
    return schedule


def _entry(task: str, args: tuple[int, ...], every_s: float) -> dict[str, Any]:
    return {
        "task": task,
        "schedule": timedelta(seconds=every_s),
        "args": args,
        "options": {"queue": WARM_QUEUE, "expires": every_s},
    }
