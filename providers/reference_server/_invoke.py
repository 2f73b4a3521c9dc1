"""The invoke path: request body in, bootstrap run, contract invoke reply out.

Success answers 200 `{"job_id", "result", "success": true, "execution_ms", "memory_used_mb",
"cold_start"}`. Every failure of the function itself answers 500 with the contract's failure
shape `{"job_id", "result": [], "success": false, "error"}` plus a machine `code`:

- FUNCTION_TIMEOUT   the run passed `timeout_secs`; the process group was killed
- FUNCTION_CRASHED   the bootstrap exited non-zero (or by a signal) or could not start
- INVALID_OUTPUT     stdout was not a reply object, or passed the output size limit
- FUNCTION_ERROR     the bootstrap replied `success: false`

A reply is answered once the bootstrap's stdout reaches EOF with a valid reply object, even
if the process still runs (an interpreter shutting down): a non-zero exit after that is
logged, not reported. A non-zero exit without such a reply is FUNCTION_CRASHED.

`execution_ms` runs from sending the request to the end of stdout. `memory_used_mb` is the
bootstrap's real peak RSS up to its reply (see `_runtime`), rounded up to whole MiB, or null
when it was not measurable.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from pydantic_core import to_json
from starlette.responses import Response

from ._errors import json_response
from ._models import BootstrapReply, InvokeRequest, parse_bootstrap_reply
from ._pool import FunctionRuntime
from ._runtime import Outcome, SpawnError
from ._store import Deployment

__all__ = ["run_invocation"]

_log = logging.getLogger(__name__)

_STDERR_IN_ERROR_CHARS = 2_000


async def run_invocation(
    deployment: Deployment, runtime: FunctionRuntime, request: InvokeRequest
) -> Response:
    """Run `request` on `deployment` and build the contract reply.

    A complete reply is answered as soon as the bootstrap's stdout reaches EOF; its exit is
    collected in the background, and a non-zero status then is only logged. Every other
    outcome waits for the exit, whose status and stderr the failure reply needs.

    Raises
    ------
    ApiError
        THROTTLED when the function's queue is full (nothing ran then).
    asyncio.CancelledError
        When cancelled; a started bootstrap's process group is killed.
    """
    stdin = to_json({"job_id": request.job_id, "args": request.args_list()})
    try:
        instance, cold_start = await runtime.invoke(stdin)
    except SpawnError as exc:
        deployment.record_invocation()
        return _failure(request.job_id, "FUNCTION_CRASHED", str(exc), {"cold_start": True})
    deployment.record_invocation()
    outcome = await instance.output()
    reply = _complete_reply(outcome)
    if isinstance(reply, str):
        final = await instance.finished()
        return _failed_run(deployment, request.job_id, final, cold_start, reply)
    instance.add_finish_callback(
        functools.partial(_log_failure_after_reply, deployment.function_id, request.job_id)
    )
    metrics = _metrics(outcome, cold_start)
    if not reply.success:
        message = reply.error or "function reported failure without an error message"
        return _failure(request.job_id, "FUNCTION_ERROR", message, metrics)
    body = {"job_id": request.job_id, "result": reply.result_list(), "success": True, **metrics}
    return json_response(body)


def _complete_reply(outcome: Outcome) -> BootstrapReply | str:
    """The reply when stdout holds a whole, valid one from a run not killed; else why not."""
    if outcome.timed_out or outcome.output_overflow:
        return "the run was killed"
    try:
        return parse_bootstrap_reply(outcome.stdout)
    except ValueError as exc:
        return str(exc)


def _failed_run(
    deployment: Deployment, job_id: int, outcome: Outcome, cold_start: bool, problem: str
) -> Response:
    metrics = _metrics(outcome, cold_start)
    if outcome.timed_out:
        message = f"function timed out after {deployment.config.timeout_secs} s and was killed"
        return _failure(job_id, "FUNCTION_TIMEOUT", message, metrics)
    if outcome.output_overflow:
        return _failure(job_id, "INVALID_OUTPUT", "stdout passed the output limit", metrics)
    if outcome.exit_code != 0:
        message = f"bootstrap {_describe_exit(outcome.exit_code)}{_stderr_note(outcome)}"
        return _failure(job_id, "FUNCTION_CRASHED", message, metrics)
    return _failure(job_id, "INVALID_OUTPUT", f"{problem}{_stderr_note(outcome)}", metrics)


def _log_failure_after_reply(function_id: str, job_id: int, outcome: Outcome) -> None:
    if outcome.exit_code != 0 or outcome.timed_out:
        status = "timed out" if outcome.timed_out else _describe_exit(outcome.exit_code)
        _log.warning(
            "bootstrap of %s (job %s) %s after its reply%s",
            function_id,
            job_id,
            status,
            _stderr_note(outcome),
        )


def _metrics(outcome: Outcome, cold_start: bool) -> dict[str, Any]:
    return {
        "execution_ms": round(outcome.execution_s * 1000),
        "memory_used_mb": _peak_mb(outcome),
        "cold_start": cold_start,
    }


def _failure(job_id: int, code: str, error: str, metrics: dict[str, Any]) -> Response:
    body = {"job_id": job_id, "result": [], "success": False, "error": error, "code": code}
    return json_response({**body, **metrics}, 500)


def _peak_mb(outcome: Outcome) -> int | None:
    if outcome.peak_rss_kb is None:
        return None
    return -(-outcome.peak_rss_kb // 1024)


def _describe_exit(exit_code: int | None) -> str:
    if exit_code is None:
        return "ended with an unknown status"
    if exit_code < 0:
        return f"was killed by signal {-exit_code}"
    return f"exited with status {exit_code}"


def _stderr_note(outcome: Outcome) -> str:
    tail = outcome.stderr_tail.decode("utf-8", "replace").strip()
    if not tail:
        return ""
    return f"; stderr: {tail[-_STDERR_IN_ERROR_CHARS:]}"
