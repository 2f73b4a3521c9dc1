"""Keeping payloads and metadata out of Flower, task events and worker logs.

Two hooks: every execute message a worker publishes (a retry) gets a redacted ``argsrepr``,
which is what Flower and task events show; and Celery's "succeeded" log line shows the shape
of the result instead of its body and metadata values. Secrets never travel in messages at
all (DESIGN.md decision 5); this keeps job data out of places operators browse.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from celery.signals import before_task_publish

from dispatcher.keys import EXECUTE_TASK

__all__ = ["install", "summarize_call"]

_TRACE_LOGGER = "celery.app.trace"


def summarize_call(args: object) -> str:
    """A task's positional args shown as job id, args length and metadata keys only."""
    wire = args[0] if isinstance(args, list | tuple) and len(args) == 1 else None
    if not isinstance(wire, Mapping):
        return "<malformed call>"
    metadata = wire.get("metadata")
    keys = sorted(metadata) if isinstance(metadata, Mapping) else []
    encoded = wire.get("args")
    # base64 of n bytes is 4*ceil(n/3) characters; the exact count needs the padding.
    size = (len(encoded) * 3) // 4 - encoded.count("=") if isinstance(encoded, str) else 0
    return f"<call job_id={wire.get('job_id')} args_bytes={size} metadata_keys={keys}>"


def install() -> None:
    """Connect the hooks (idempotent: safe to call for every app built in a process)."""
    before_task_publish.connect(_redact_published, weak=False, dispatch_uid="blueprint-redact")
    trace_logger = logging.getLogger(_TRACE_LOGGER)
    if not any(isinstance(f, _ResultRedactingFilter) for f in trace_logger.filters):
        trace_logger.addFilter(_ResultRedactingFilter())


def _redact_published(
    sender: str | None = None,
    body: Any = None,
    headers: dict[str, Any] | None = None,
    **_: Any,
) -> None:
    if sender != EXECUTE_TASK or headers is None:
        return
    args = body[0] if isinstance(body, list | tuple) and body else None
    headers["argsrepr"] = summarize_call(args)
    headers["kwargsrepr"] = "{}"


class _ResultRedactingFilter(logging.Filter):
    """Hides return values and raw args in Celery's task trace records ("succeeded in")."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, Mapping) and "return_value" in args:
            record.args = {
                **args,
                "return_value": "<redacted>",
                "args": "<redacted>",
                "kwargs": "<redacted>",
            }
        return True
