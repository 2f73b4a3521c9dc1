"""Where every job of an app stands: where it runs, its function, health, queue and workers.

One call, :func:`app_status`, gathers for each job id of the app:

- local or FaaS, and the provider; its placement policy, and for a job placed on both sides
  its second queue (the FaaS overflow or the local fallback lane);
- for a FaaS job, its provider scope's circuit breaker (closed, open with the cool-down
  left, half-open) and concurrency budget (limit now, declared, leases out), read from the
  broker's Redis (:mod:`dispatcher.breaker`, :mod:`dispatcher.budget`);
- for a FaaS job, the deployment state as the provider reports it now (``get_deployment``:
  deployed, not deployed, or an error asking);
- the last health check the workers' health task stored in the hash at
  :func:`dispatcher.keys.health_key` (:mod:`dispatcher.records`; absent until one ran);
- the number of calls waiting in its queue, asked of the broker through kombu (so kombu's
  own key layout, priority sub-queues included, is its business, not ours);
- the workers consuming its queue, from Celery's ``inspect().active_queues()``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from dispatcher._redis import broker_redis, operations_redis
from dispatcher.breaker import BreakerView, read_breaker
from dispatcher.budget import BudgetView, read_budget
from dispatcher.keys import job_queue
from dispatcher.placement import job_queues
from dispatcher.records import HealthRecord, read_health
from providers.errors import FaasError, NotDeployed

if TYPE_CHECKING:
    import redis
    from celery import Celery

    from dispatcher.app import Blueprint
    from dispatcher.settings import Settings
    from providers.base import FaasExecutor

__all__ = [
    "DEFAULT_INSPECT_TIMEOUT_S",
    "LOCAL_RUNS_ON",
    "AppStatus",
    "DeploymentState",
    "JobStatus",
    "app_status",
    "queue_lengths",
    "workers_by_queue",
]

#: How long ``inspect`` waits for workers to answer; a worker slower than this is not listed.
DEFAULT_INSPECT_TIMEOUT_S = 1.0
LOCAL_RUNS_ON = "local"
FAAS_RUNS_ON = "faas"


class DeploymentState(StrEnum):
    DEPLOYED = "deployed"
    NOT_DEPLOYED = "not_deployed"
    #: The provider could not be asked (down, auth...): the state is unknown.
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class JobStatus:
    """One job's line of ``blueprint-faas status``."""

    job_id: int
    runs_on: str
    provider: str | None
    queue: str
    queue_length: int
    workers: tuple[str, ...]
    deployment: DeploymentState | None = None
    #: ``kind: message`` of the error when ``deployment`` is ERROR.
    deployment_error: str | None = None
    health: HealthRecord | None = None
    placement: str = LOCAL_RUNS_ON
    #: The second queue of a job placed on both sides, and the calls waiting in it.
    lane_queue: str | None = None
    lane_queue_length: int = 0
    breaker: BreakerView | None = None
    budget: BudgetView | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values."""
        breaker, budget = self.breaker, self.budget
        return {
            "job_id": self.job_id,
            "runs_on": self.runs_on,
            "provider": self.provider,
            "placement": self.placement,
            "lane_queue": self.lane_queue,
            "lane_queue_length": self.lane_queue_length,
            "breaker": None
            if breaker is None
            else {
                "state": str(breaker.state),
                "cooldown_left_s": breaker.cooldown_left_s,
                "consecutive_failures": breaker.consecutive_failures,
            },
            "budget": None
            if budget is None
            else {"limit": budget.limit, "declared": budget.declared, "in_use": budget.in_use},
            "deployment": None if self.deployment is None else str(self.deployment),
            "deployment_error": self.deployment_error,
            "health": None
            if self.health is None
            else {
                "status": str(self.health.status),
                "checked_at": self.health.checked_at,
                "error": self.health.error or None,
            },
            "queue": self.queue,
            "queue_length": self.queue_length,
            "workers": list(self.workers),
        }


@dataclass(frozen=True, slots=True)
class AppStatus:
    jobs: tuple[JobStatus, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"jobs": [job.to_dict() for job in self.jobs]}


def app_status(
    blueprint: Blueprint, *, inspect_timeout_s: float = DEFAULT_INSPECT_TIMEOUT_S
) -> AppStatus:
    """The status of every job of ``blueprint``.

    Providers are asked in parallel with the workers' inspect round, so the call takes about
    ``inspect_timeout_s`` plus the slowest provider's answer.

    Raises
    ------
    kombu.exceptions.OperationalError
        The broker cannot be reached.
    redis.RedisError
        The broker's Redis fails while reading health records.
    """
    settings = blueprint.settings
    job_ids = blueprint.job_ids()
    queues = [job_queue(job_id) for job_id in job_ids]
    lanes = {
        job_id: queue
        for job_id in job_ids
        for queue in job_queues(job_id, blueprint.placement(job_id)).values()
        if queue != job_queue(job_id)
    }
    app = _control_app(settings)
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            workers_future = pool.submit(workers_by_queue, app, inspect_timeout_s)
            deployments = {
                job_id: pool.submit(_deployment_state, blueprint.registry.get(job_id), job_id)
                for job_id in blueprint.registry.job_ids()
            }
            lengths = queue_lengths(app, [*queues, *lanes.values()])
            workers = workers_future.result()
        client = operations_redis(settings)
        broker = broker_redis(settings)
        jobs = []
        for job_id, queue in zip(job_ids, queues, strict=True):
            lane = lanes.get(job_id)
            serving = {*workers.get(queue, ()), *workers.get(lane or "", ())}
            status = JobStatus(
                job_id=job_id,
                runs_on=LOCAL_RUNS_ON,
                provider=None,
                queue=queue,
                queue_length=lengths[queue],
                workers=tuple(sorted(serving)),
                placement=str(blueprint.placement(job_id)),
                lane_queue=lane,
                lane_queue_length=0 if lane is None else lengths[lane],
            )
            if job_id in deployments:
                executor = blueprint.registry.get(job_id)
                state, error = deployments[job_id].result()
                status = replace(
                    status,
                    runs_on=FAAS_RUNS_ON,
                    provider=executor.provider_name,
                    deployment=state,
                    deployment_error=error,
                    health=None if client is None else read_health(client, job_id),
                    **({} if broker is None else _guards(broker, executor)),
                )
            jobs.append(status)
        for opened in (client, broker):
            if opened is not None:
                opened.close()
    finally:
        app.close()
    return AppStatus(tuple(jobs))


def queue_lengths(app: Celery, queues: Iterable[str]) -> dict[str, int]:
    """Calls waiting in each queue (not counting those a worker holds unacknowledged).

    Asked through kombu's passive queue declare, which sums kombu's priority sub-queues on
    Redis and works on every transport; a queue that does not exist yet holds 0.

    Raises
    ------
    kombu.exceptions.OperationalError
        The broker cannot be reached.
    """
    from kombu.exceptions import ChannelError

    lengths: dict[str, int] = {}
    with app.connection_for_read() as connection:
        connection.ensure_connection(max_retries=1)
        for queue in queues:
            # A failed passive declare may close the channel: one channel per queue.
            channel = connection.channel()
            try:
                lengths[queue] = int(channel.queue_declare(queue=queue, passive=True).message_count)
            except ChannelError:
                lengths[queue] = 0
            finally:
                channel.close()
    return lengths


def workers_by_queue(
    app: Celery, timeout_s: float = DEFAULT_INSPECT_TIMEOUT_S
) -> dict[str, list[str]]:
    """Queue name -> the names of the workers consuming it, sorted.

    Only workers that answer the broadcast within ``timeout_s`` are counted.
    """
    replies: Mapping[str, list[dict[str, Any]]] | None = app.control.inspect(
        timeout=timeout_s
    ).active_queues()
    serving: dict[str, list[str]] = {}
    for worker, queues in (replies or {}).items():
        for queue in queues:
            serving.setdefault(str(queue.get("name")), []).append(worker)
    return {queue: sorted(workers) for queue, workers in serving.items()}


def _guards(broker: redis.Redis, executor: FaasExecutor) -> dict[str, Any]:
    # The breaker and budget of the executor's scope, as every worker sees them.
    declared = executor.limits.max_account_concurrency
    return {
        "breaker": read_breaker(broker, executor.scope),
        "budget": None if declared is None else read_budget(broker, executor.scope, declared),
    }


def _deployment_state(executor: FaasExecutor, job_id: int) -> tuple[DeploymentState, str | None]:
    try:
        executor.get_deployment(job_id)
    except NotDeployed:
        return DeploymentState.NOT_DEPLOYED, None
    except FaasError as error:
        return DeploymentState.ERROR, f"{error.kind}: {error.message}"
    return DeploymentState.DEPLOYED, None


def _control_app(settings: Settings) -> Celery:
    # Imported here: the CLI must be able to monkey-patch for gevent before Celery loads.
    from celery import Celery

    app = Celery("blueprint-faas-operations", set_as_current=False)
    app.conf.update(settings.celery_connection_config())
    return app
