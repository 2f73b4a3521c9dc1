"""The last health status of each FaaS job, kept in the Redis hash ``health_key(job_id)``.

The health task writes it; operators (``blueprint-faas health``, dashboards) read it. Fields:
``status`` (:class:`HealthStatus`), ``checked_at`` (Unix seconds), ``error`` (the error kind
and message of a failed check, "" otherwise; provider messages carry no secrets, and the
message is cut at :data:`MAX_ERROR_CHARS`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from dispatcher.keys import health_key
from providers.errors import FaasError

if TYPE_CHECKING:
    import redis

__all__ = [
    "MAX_ERROR_CHARS",
    "HealthRecord",
    "HealthStatus",
    "describe_error",
    "read_health",
    "store_health",
]

MAX_ERROR_CHARS = 500


class HealthStatus(StrEnum):
    """What the last check found."""

    #: The provider says the function is deployed and can run.
    HEALTHY = "healthy"
    #: The provider says the function is missing or cannot run.
    UNHEALTHY = "unhealthy"
    #: The check itself failed (transport, auth, throttle): nothing is known of the function.
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class HealthRecord:
    job_id: int
    status: HealthStatus
    checked_at: float
    error: str = ""


def describe_error(error: BaseException) -> str:
    """A short, secret-free description: the FaaS error kind and message, else the type only.

    Messages of foreign exceptions may quote URLs or headers, so only their type is kept.
    """
    if isinstance(error, FaasError):
        text = f"{error.kind}: {error.message}"
    else:
        text = type(error).__name__
    return text[:MAX_ERROR_CHARS]


def store_health(
    redis_client: redis.Redis,
    job_id: int,
    status: HealthStatus,
    error: BaseException | None = None,
) -> HealthRecord:
    """Write the outcome of a check of ``job_id``'s function.

    Raises
    ------
    redis.RedisError
        Redis cannot be reached.
    """
    record = HealthRecord(
        job_id, status, time.time(), "" if error is None else describe_error(error)
    )
    redis_client.hset(
        health_key(job_id),
        mapping={
            "status": record.status.value,
            "checked_at": repr(record.checked_at),
            "error": record.error,
        },
    )
    return record


def read_health(redis_client: redis.Redis, job_id: int) -> HealthRecord | None:
    """The last stored check of ``job_id``, or None when it was never checked.

    Raises
    ------
    redis.RedisError
        Redis cannot be reached.
    """
    raw = redis_client.hgetall(health_key(job_id))
    if not raw:
        return None
    fields = {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in raw.items()
    }
    return HealthRecord(
        job_id=job_id,
        status=HealthStatus(fields["status"]),
        checked_at=float(fields["checked_at"]),
        error=fields.get("error", ""),
    )
