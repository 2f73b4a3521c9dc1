"""The invocation ledger: a capped Redis stream of recent FaaS invocations, one entry each.

Workers append every FaaS invocation attempt (retried ones included) to the stream
:data:`~dispatcher.keys.INVOCATION_LEDGER_KEY`, trimmed to about :data:`LEDGER_MAXLEN`
entries; ``blueprint-faas cost`` reads it back with :func:`recent_invocations`. Prometheus
counts the same invocations; the ledger keeps the individual figures for a while.

Stream fields are strings; a figure the provider did not report is stored as ``""`` and read
back as None.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from dispatcher.keys import INVOCATION_LEDGER_KEY

if TYPE_CHECKING:
    import redis

__all__ = ["LEDGER_MAXLEN", "InvocationRecord", "append_invocation", "recent_invocations"]

logger = logging.getLogger("blueprint_faas.workers.ledger")

#: Entries kept (approximately: Redis trims whole macro nodes, ``MAXLEN ~``).
LEDGER_MAXLEN = 10_000


@dataclass(frozen=True, slots=True)
class InvocationRecord:
    """One FaaS invocation attempt as the ledger keeps it.

    ``ts`` is a Unix time in seconds; ``error_kind`` is None for a success; durations are in
    milliseconds and None when not reported; ``cost_usd`` is None when the provider has no
    price (or no memory size was known). ``entry_id`` is the stream id ("" before appending).
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
    fields: dict[Any, Any] = {name: _encode(value) for name, value in asdict(record).items()}
    del fields["entry_id"]
    entry_id = redis_client.xadd(
        INVOCATION_LEDGER_KEY, fields, maxlen=LEDGER_MAXLEN, approximate=True
    )
    return _text(entry_id)


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
        entry_id=entry_id,
    )
