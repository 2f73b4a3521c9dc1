"""What workers record for operators in Redis, written and read by this one module.

Two formats, both keyed by :mod:`dispatcher.keys`, both written by workers and read by the
operator commands (``blueprint-faas health``, ``blueprint-faas cost``) and dashboards, so they
live here, next to the keys, and the dispatcher never imports the workers to read them:

- **Health**: the last health status of each FaaS job, in the hash ``health_key(job_id)``.
  Fields: ``status`` (:class:`HealthStatus`), ``checked_at`` (Unix seconds), ``error`` (the
  error kind and message of a failed check, "" otherwise; provider messages carry no
  secrets, and the message is cut at :data:`MAX_ERROR_CHARS`).
- **The invocation ledger**: a capped Redis stream of recent FaaS invocation attempts
  (retried ones included), :data:`~dispatcher.keys.INVOCATION_LEDGER_KEY`, trimmed to about
  :data:`LEDGER_MAXLEN` entries. Prometheus counts the same invocations; the ledger keeps the
  individual figures for a while. Stream fields are strings; a figure the provider did not
  report is stored as ``""`` and read back as None.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from dispatcher.keys import INVOCATION_LEDGER_KEY, health_key
from providers.errors import FaasError

if TYPE_CHECKING:
    import redis

__all__ = [  # noqa: RUF022  (grouped by purpose)
    # Health
    "MAX_ERROR_CHARS",
    "HealthRecord",
    "HealthStatus",
    "describe_error",
    "read_health",
    "store_health",
    # The invocation ledger
    "LEDGER_MAXLEN",
    "InvocationRecord",
    "append_invocation",
    "append_invocations",
    "recent_invocations",
]

logger = logging.getLogger("blueprint_faas.records")

# -- health ------------------------------------------------------------------------------

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
    fields = {_text(key): _text(value) for key, value in raw.items()}
    return HealthRecord(
        job_id=job_id,
        status=HealthStatus(fields["status"]),
        checked_at=float(fields["checked_at"]),
        error=fields.get("error", ""),
    )


# -- the invocation ledger -----------------------------------------------------------------

#: Entries kept (approximately: Redis trims whole macro nodes, ``MAXLEN ~``).
LEDGER_MAXLEN = 10_000


@dataclass(frozen=True, slots=True)
class InvocationRecord:
    """One FaaS invocation attempt as the ledger keeps it.

    ``ts`` is a Unix time in seconds; ``error_kind`` is None for a success; durations are in
    milliseconds and None when not reported; ``cost_usd`` is None when the provider has no
    price (or no memory size was known); ``region`` is where the executor runs (None: the
    provider's default region priced it). ``entry_id`` is the stream id ("" before appending).
    """

    ts: float
    job_id: int
    provider: str
    ok: bool
    error_kind: str | None = None
    total_ms: float | None = None
    execution_ms: float | None = None
    billed_ms: float | None = None
    memory_mb: float | None = None
    cold_start: bool | None = None
    cost_usd: float | None = None
    region: str | None = None
    entry_id: str = ""


def recent_invocations(
    redis_client: redis.Redis, count: int = LEDGER_MAXLEN
) -> list[InvocationRecord]:
    """The ``count`` most recent invocations, newest first.

    Entries that cannot be read (written by a newer or broken writer) are skipped and logged.

    Raises
    ------
    redis.RedisError
        Redis cannot be reached.
    ValueError
        ``count`` is below 1.
    """
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    entries: Any = redis_client.xrevrange(INVOCATION_LEDGER_KEY, count=count)
    records = []
    for entry_id, fields in entries or []:
        try:
            records.append(_decode(_text(entry_id), fields or {}))
        except (KeyError, ValueError) as error:
            logger.warning("skipping unreadable ledger entry %r: %r", entry_id, error)
    return records


def append_invocation(redis_client: redis.Redis, record: InvocationRecord) -> str:
    """Append ``record`` to the ledger, trimming it to about :data:`LEDGER_MAXLEN` entries.

    Returns
    -------
    str
        The new entry's stream id.

    Raises
    ------
    redis.RedisError
        Redis cannot be reached (callers that observe a task log it and go on).
    """
    entry_id = redis_client.xadd(
        INVOCATION_LEDGER_KEY, _fields(record), maxlen=LEDGER_MAXLEN, approximate=True
    )
    return _text(entry_id)


def append_invocations(redis_client: Any, records: list[InvocationRecord]) -> None:
    """:func:`append_invocation` for several records, in one round trip (a batch's calls).

    Raises
    ------
    redis.RedisError
        Redis cannot be reached (callers that observe a task log it and go on).
    """
    with redis_client.pipeline(transaction=False) as pipe:
        for record in records:
            pipe.xadd(
                INVOCATION_LEDGER_KEY, _fields(record), maxlen=LEDGER_MAXLEN, approximate=True
            )
        pipe.execute()


def _fields(record: InvocationRecord) -> dict[Any, Any]:
    fields: dict[Any, Any] = {name: _encode(value) for name, value in asdict(record).items()}
    del fields["entry_id"]
    return fields


def _encode(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _decode(entry_id: str, raw: dict[Any, Any]) -> InvocationRecord:
    fields = {_text(key): _text(value) for key, value in raw.items()}

    def number(name: str) -> float | None:
        value = fields.get(name, "")
        return float(value) if value else None

    def flag(name: str) -> bool | None:
        value = fields.get(name, "")
        return value == "1" if value else None

    return InvocationRecord(
        ts=float(fields["ts"]),
        job_id=int(fields["job_id"]),
        provider=fields["provider"],
        ok=fields["ok"] == "1",
        error_kind=fields.get("error_kind") or None,
        total_ms=number("total_ms"),
        execution_ms=number("execution_ms"),
        billed_ms=number("billed_ms"),
        memory_mb=number("memory_mb"),
        cold_start=flag("cold_start"),
        cost_usd=number("cost_usd"),
        region=fields.get("region") or None,
        entry_id=entry_id,
    )
