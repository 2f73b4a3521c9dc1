"""Keeping payloads and metadata out of Flower, task events and worker logs.

Three hooks: every execute message a worker publishes (a retry) gets a redacted ``argsrepr``,
which is what Flower and task events show; the execute task's return value is a
:class:`SummarizedResult`, whose repr (what ``task-succeeded`` events carry, as Celery builds
them from ``repr(result)``) is a summary while its JSON form is the full wire dict; and
Celery's "succeeded" log line shows ``<redacted>`` for the result and the args, which it would
otherwise print from the message itself when a producer sent no ``argsrepr``. httpx's
per-request log line is turned off below WARNING: it shows the full URL, query string
included, where a function key can sit (Azure's ``?code=``), and it cost a log line per call.
Secrets never travel in messages at all (README, "Credentials"); this keeps job data out of
places operators browse.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ParamSpec

from celery.signals import before_task_publish

from dispatcher.keys import EXECUTE_TASK

__all__ = ["SummarizedResult", "install", "summarize_call", "summarize_result", "summarized"]

_TRACE_LOGGER = "celery.app.trace"
_HTTPX_LOGGER = "httpx"
_P = ParamSpec("_P")


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


def summarize_result(wire: Mapping[str, Any]) -> str:
    """A JobResult wire dict shown as job id, outcome, where it ran and sizes only."""
    metadata = wire.get("metadata")
    keys = sorted(metadata) if isinstance(metadata, Mapping) else []
    body = wire.get("body")
    size = (len(body) * 3) // 4 - body.count("=") if isinstance(body, str) else 0
    error = wire.get("error")
    kind = error.get("kind") if isinstance(error, Mapping) else None
    return (
        f"<result job_id={wire.get('job_id')} ok={wire.get('ok')} ran_on={wire.get('ran_on')} "
        f"attempts={wire.get('attempts')} error_kind={kind} body_bytes={size} "
        f"metadata_keys={keys}>"
    )


class SummarizedResult(Mapping[str, Any]):
    """A JobResult wire dict that reprs as its summary and serialises as itself.

    It is a Mapping but not a dict, so Celery's ``saferepr`` calls our ``__repr__`` instead
    of walking the values, and kombu's JSON encoder stores ``__json__()``: the backend, the
    runner and the idempotency guard see the plain wire dict.
    """

    __slots__ = ("wire",)

    def __init__(self, wire: Mapping[str, Any]) -> None:
        self.wire = wire

    def __getitem__(self, key: str) -> Any:
        return self.wire[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.wire)

    def __len__(self) -> int:
        return len(self.wire)

    def __json__(self) -> Mapping[str, Any]:
        return self.wire

    def __repr__(self) -> str:
        return summarize_result(self.wire)


def summarized(
    run: Callable[_P, Mapping[str, Any]],
) -> Callable[_P, SummarizedResult]:
    """Wrap a task body so that its wire-dict result is a :class:`SummarizedResult`."""

    @functools.wraps(run)
    def wrapped(*args: _P.args, **kwargs: _P.kwargs) -> SummarizedResult:
        return SummarizedResult(run(*args, **kwargs))

    return wrapped


def install() -> None:
    """Connect the hooks (idempotent: safe to call for every app built in a process)."""
    before_task_publish.connect(_redact_published, weak=False, dispatch_uid="blueprint-redact")
    trace_logger = logging.getLogger(_TRACE_LOGGER)
    if not any(isinstance(f, _ResultRedactingFilter) for f in trace_logger.filters):
        trace_logger.addFilter(_ResultRedactingFilter())
    httpx_logger = logging.getLogger(_HTTPX_LOGGER)
    if httpx_logger.level == logging.NOTSET:  # an operator's own choice stands
        httpx_logger.setLevel(logging.WARNING)


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
