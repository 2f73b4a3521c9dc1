"""The workers' Celery app: broker, backend and the reliability profile, nothing else.

The profile (README, "Reliability: what is guaranteed"): late acknowledgement and requeue
when a worker is lost (a call is acknowledged only once its result is stored), prefetch 1 (a
forwarding worker does not hoard calls another could start), a soft shutdown window, time
limits above the slowest function's own timeout, and a visibility timeout above the hard
limit plus the longest retry delay (checked here, at start, rather than discovered as
duplicate runs).

Every worker also consumes the control queue (``blueprint.control``) that carries warm and
health tasks: the app definition gives every worker every executor, so any idle worker can
run them, and a separate queue keeps them from waiting behind a long job queue. The beat app
(:func:`create_beat_app`) only sends: its schedule is :mod:`workers.beat`, its lock
:mod:`workers.scheduler`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from celery import Celery
from kombu import Exchange, Queue

from dispatcher.errors import ConfigError
from dispatcher.keys import HEALTH_TASK, WARM_QUEUE, WARM_TASK
from dispatcher.placement import Lane, job_queues
from workers import exporter, observe, redaction
from workers._prefork import POOL_PATH
from workers._results import BACKEND_PATH
from workers.batch import register_batch_task
from workers.beat import beat_schedule
from workers.tasks import register_tasks

if TYPE_CHECKING:
    from dispatcher.app import Blueprint

__all__ = ["create_beat_app", "create_celery_app", "served_job_ids", "served_queues"]


def served_job_ids(blueprint: Blueprint, jobs: Iterable[int] | None = None) -> list[int]:
    """The jobs a worker serves: ``jobs`` if given, else every job of the blueprint.

    Raises
    ------
    ConfigError
        No job to serve, or a job the blueprint does not define.
    """
    job_ids = sorted(set(jobs)) if jobs is not None else blueprint.job_ids()
    if not job_ids:
        raise ConfigError("the app defines no job: nothing to serve")
    unknown = [job_id for job_id in job_ids if not blueprint.knows(job_id)]
    if unknown:
        raise ConfigError(f"the app defines no job {unknown}")
    return job_ids


def served_queues(
    blueprint: Blueprint, job_ids: Iterable[int], lanes: Iterable[Lane] | None = None
) -> list[str]:
    """The job queues a worker serving ``job_ids`` on ``lanes`` (default: both) consumes.

    A job placed on both sides has a queue per side (:func:`dispatcher.placement.job_queues`):
    a host of local workers may serve the local side and a pool of threads the FaaS side.

    Raises
    ------
    ConfigError
        No queue of these jobs is on these lanes.
    """
    wanted = set(Lane) if lanes is None else set(lanes)
    queues = [
        queue
        for job_id in job_ids
        for lane, queue in job_queues(job_id, blueprint.placement(job_id)).items()
        if lane in wanted
    ]
    if not queues:
        raise ConfigError(
            f"jobs {sorted(job_ids)} have no queue on the {'/'.join(sorted(wanted))} side"
        )
    return queues


def create_celery_app(
    blueprint: Blueprint,
    jobs: Iterable[int] | None = None,
    *,
    concurrency: int | None = None,
    lanes: Iterable[Lane] | None = None,
) -> Celery:
    """The Celery app of a worker serving ``jobs`` (default: all) of ``blueprint``.

    ``concurrency`` (default: one per CPU, as Celery's) sizes the broker connection pool;
    ``lanes`` (default: both) picks the sides of the jobs it serves (:func:`served_queues`).

    Raises
    ------
    ConfigError
        Unknown jobs, a placement without what it runs on, no queue on ``lanes``, or a
        visibility timeout too short for the served jobs' time limits.
    """
    settings = blueprint.settings
    blueprint.check_placements()
    job_ids = served_job_ids(blueprint, jobs)
    queues = served_queues(blueprint, job_ids, lanes)
    function_timeouts_s = [
        blueprint.registry.get(job_id).job_config(job_id).timeout_secs
        for job_id in job_ids
        if job_id in blueprint.registry
    ]
    time_limits_s = settings.time_limits_s(function_timeouts_s)
    if not settings.is_embedded:
        try:
            settings.check_visibility_timeout(time_limits_s[1])
        except ValueError as error:
            raise ConfigError(str(error)) from error

    app = Celery("blueprint-faas", set_as_current=True)
    app.conf.update(settings.celery_connection_config())
    if not settings.is_embedded:
        app.conf.broker_transport_options["max_connections"] = _broker_connection_cap(concurrency)
    app.conf.update(
        result_backend=_worker_result_backend(app.conf.result_backend),
        # One backend (one Redis connection pool) for the whole process. Celery's default is
        # one per thread, and gevent makes that one per greenlet, that is one per call: a
        # new backend, connection pool and Redis connection for every task.
        result_backend_thread_safe=True,
        task_queues=[*(_job_queue_named(queue) for queue in queues), _job_queue_named(WARM_QUEUE)],
        task_routes=_CONTROL_ROUTES,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        task_track_started=False,
        worker_prefetch_multiplier=1,
        worker_soft_shutdown_timeout=settings.soft_shutdown_s,
        worker_enable_soft_shutdown_on_idle=True,
        # With Redis an acknowledgement still works after a reconnect, so a running call is
        # left to finish and store its result instead of being cancelled and run again.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        worker_send_task_events=settings.send_events,
        task_send_sent_event=False,
        worker_disable_rate_limits=True,
        # ``--pool prefork`` selects this one (workers._prefork); other pools are Celery's.
        worker_pool=POOL_PATH,
    )
    register_tasks(app, blueprint, time_limits_s=time_limits_s)
    register_batch_task(app, blueprint, call_time_limit_s=time_limits_s[0])
    redaction.install()
    observe.install()
    exporter.install(settings.metrics_port)
    return app


def create_beat_app(blueprint: Blueprint) -> Celery:
    """The Celery app of ``blueprint-faas beat``: the schedule of the blueprint's FaaS jobs.

    The scheduler is :class:`workers.scheduler.SingleBeatScheduler`, which sends only while it
    holds the beat lock on the broker's Redis.

    Raises
    ------
    ConfigError
        The broker is not Redis (the lock lives there).
    """
    settings = blueprint.settings
    if urlsplit(settings.resolved_broker_url).scheme not in _LOCKABLE_SCHEMES:
        raise ConfigError("beat needs a Redis broker for its lock: set BLUEPRINT_FAAS_BROKER_URL")
    app = Celery("blueprint-faas-beat", set_as_current=True)
    app.conf.update(settings.celery_connection_config())
    app.conf.update(
        task_queues=[_job_queue_named(WARM_QUEUE)],
        task_routes=_CONTROL_ROUTES,
        beat_schedule=beat_schedule(blueprint),
        beat_scheduler="workers.scheduler:SingleBeatScheduler",
        blueprint_beat_lock_url=settings.resolved_broker_url,
        blueprint_beat_lock_ttl_s=settings.beat_lock_ttl_s,
    )
    return app


def _broker_connection_cap(concurrency: int | None) -> int:
    # A gevent pool acknowledges from every green thread at once, each on a broker connection
    # of its own, and redis-py raises past its cap instead of waiting (kombu's default is 10):
    # the ack failed, and a call just read off its queue could be lost before kombu recorded it
    # as unacknowledged. One connection per slot, plus the consumer's, control and spares.
    return (concurrency or os.cpu_count() or 1) + _SPARE_BROKER_CONNECTIONS


#: Broker connections beyond one per pool slot: consumer loop, remote control, restores.
_SPARE_BROKER_CONNECTIONS = 10
#: Broker URL schemes whose server can hold the beat lock.
_LOCKABLE_SCHEMES = frozenset({"redis", "rediss", "unix"})
#: Warm and health tasks go to the control queue, whoever sends them.
_CONTROL_ROUTES = {name: {"queue": WARM_QUEUE} for name in (WARM_TASK, HEALTH_TASK)}


def _worker_result_backend(url: str) -> str:
    # On Redis, results are stored by one atomic script (workers._results); the URL stays.
    if urlsplit(url).scheme in _SCRIPTABLE_SCHEMES:
        return f"{BACKEND_PATH}+{url}"
    return url


#: Result backend URL schemes that workers._results.ResultBackend serves.
_SCRIPTABLE_SCHEMES = frozenset({"redis", "rediss"})


def _job_queue_named(name: str) -> Queue:
    # The same declaration the runner's Celery makes for a queue it publishes to by name.
    return Queue(name, Exchange(name, type="direct"), routing_key=name)
