"""Every queue name, task name and Redis key prefix the runner and the workers share.

No name is spelled out anywhere else: producer and worker agree through this module and the
job model only.
"""

from __future__ import annotations

from providers.base import check_job_id

__all__ = [
    "BEAT_LOCK_KEY",
    "BREAKER_KEY_PREFIX",
    "BUDGET_KEY_PREFIX",
    "CONSUMERS_KEY",
    "EXECUTE_BATCH_TASK",
    "EXECUTE_TASK",
    "HEALTH_TASK",
    "INVOCATION_LEDGER_KEY",
    "JOB_QUEUE_PREFIX",
    "KEY_PREFIX",
    "METRICS_MULTIPROC_DIR_ENV",
    "METRICS_PORT_DEFAULT",
    "METRICS_PREFIX",
    "REQUEUES_HEADER",
    "RESTORER_LOCK_KEY",
    "WARM_QUEUE",
    "WARM_TASK",
    "breaker_key",
    "budget_key",
    "consumer_in_flight_key",
    "consumer_liveness_key",
    "health_key",
    "job_queue",
    "lane_queue",
    "wake_key",
]

#: Prefix of every queue that carries job calls.
JOB_QUEUE_PREFIX = "blueprint.jobs."
#: Queue of warm and health tasks, kept apart so they never wait behind a long job queue.
WARM_QUEUE = "blueprint.control"
#: Prefix of our own Redis keys (health status, locks, metrics).
KEY_PREFIX = "blueprint-faas:"

EXECUTE_TASK = "blueprint_faas.execute"
#: Several calls of one job in one message; each call is its own JobCall wire dict.
EXECUTE_BATCH_TASK = "blueprint_faas.execute_batch"
#: Header of an execute task's message: how often the call went back to its queue for want
#: of a concurrency lease (not attempts: nothing was sent).
REQUEUES_HEADER = "blueprint_requeues"
WARM_TASK = "blueprint_faas.warm"
HEALTH_TASK = "blueprint_faas.health"

#: Prefix of every Prometheus metric we export.
METRICS_PREFIX = "blueprint_faas_"
#: Port of a worker host's Prometheus exporter.
METRICS_PORT_DEFAULT = 9808
#: prometheus_client's own variable naming the directory its worker processes share.
METRICS_MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


#: Redis stream of recent FaaS invocations (job, provider, durations, memory, cost), capped;
#: what ``blueprint-faas cost`` summarises.
INVOCATION_LEDGER_KEY = f"{KEY_PREFIX}invocations"
#: The lock that lets exactly one ``blueprint-faas beat`` schedule at a time.
BEAT_LOCK_KEY = f"{KEY_PREFIX}beat-lock"
_HEALTH_KEY_PREFIX = f"{KEY_PREFIX}health:"


def health_key(job_id: int) -> str:
    """The Redis hash holding a FaaS job's last health status, time and error."""
    return f"{_HEALTH_KEY_PREFIX}{check_job_id(job_id)}"


def job_queue(job_id: int) -> str:
    """The queue of a job id: ``blueprint.jobs.<job_id>``."""
    return f"{JOB_QUEUE_PREFIX}{check_job_id(job_id)}"


def lane_queue(job_id: int, lane: str) -> str:
    """The second queue of a job placed on both sides: ``blueprint.jobs.<job_id>.<lane>``.

    ``lane`` is ``faas`` (a local job's overflow) or ``local`` (a FaaS job's fallback);
    :mod:`dispatcher.placement` says which job has which.
    """
    return f"{job_queue(job_id)}.{lane}"


# -- shared provider guards (dispatcher.breaker, dispatcher.budget) ------------------------

#: Prefix of the Redis hash holding one provider scope's circuit breaker.
BREAKER_KEY_PREFIX = f"{KEY_PREFIX}breaker:"
#: Prefix of the Redis keys of one provider scope's concurrency budget.
BUDGET_KEY_PREFIX = f"{KEY_PREFIX}budget:"


def breaker_key(scope: str) -> str:
    """The hash of the breaker of ``scope`` (an executor's ``scope``: provider and endpoint)."""
    return f"{BREAKER_KEY_PREFIX}{scope}"


def budget_key(scope: str, part: str) -> str:
    """A key of the concurrency budget of ``scope``: ``leases`` (a zset) or ``limit`` (a hash)."""
    return f"{BUDGET_KEY_PREFIX}{scope}:{part}"


# -- the broker's consumer records (dispatcher._broker, dispatcher._consumers) ---------------

#: Redis set of every consumer that may hold calls in flight (live or not yet restored).
CONSUMERS_KEY = f"{KEY_PREFIX}consumers"
#: The lock that lets one restorer at a time return dead consumers' calls to their queues.
RESTORER_LOCK_KEY = f"{KEY_PREFIX}restorer-lock"
_CONSUMER_KEY_PREFIX = f"{KEY_PREFIX}consumer:"
_IN_FLIGHT_KEY_PREFIX = f"{KEY_PREFIX}in-flight:"
_WAKE_KEY_PREFIX = f"{KEY_PREFIX}wake:"


def consumer_liveness_key(consumer_id: str) -> str:
    """The key a live consumer keeps renewing; its expiry declares the consumer dead."""
    return f"{_CONSUMER_KEY_PREFIX}{consumer_id}"


def consumer_in_flight_key(consumer_id: str) -> str:
    """The Redis hash of a consumer's calls in flight: delivery tag -> the list it came from."""
    return f"{_IN_FLIGHT_KEY_PREFIX}{consumer_id}"


def wake_key(queue: str) -> str:
    """The list a publisher pushes a token to for each message it puts on ``queue``."""
    return f"{_WAKE_KEY_PREFIX}{queue}"
