"""The invoke path: request body in, bootstrap run, contract invoke reply out.

Success answers 200 `{"job_id", "result", "success": true, "execution_ms", "memory_used_mb",
"cold_start"}`. Every failure of the function itself answers 500 with the contract's failure
shape `{"job_id", "result": [], "success": false, "error"}` plus a machine `code`:

- FUNCTION_TIMEOUT   the run passed `timeout_secs`; the process group was killed
- FUNCTION_CRASHED   the bootstrap exited non-zero (or by a signal) or could not start
- INVALID_OUTPUT     stdout was not a reply object, or passed the output size limit
- FUNCTION_ERROR     the bootstrap replied `success: false`

`memory_used_mb` is the bootstrap's real peak RSS (VmHWM up to its reply), rounded up to
whole MiB, or null when it was not measurable (nothing written to stdout).
"""

from __future__ import annotations

from typing import Any

from pydantic_core import to_json
from starlette.responses import Response

from ._errors import json_response
from ._models import InvokeRequest, parse_bootstrap_reply
from ._pool import FunctionRuntime
from ._runtime import Outcome, SpawnError
from ._store import Deployment

__all__ = ["run_invocation"]

_STDERR_IN_ERROR_CHARS = 2_000


async def run_invocation(
    deployment: Deployment, runtime: FunctionRuntime, request: InvokeRequest
) -> Response:
    """Run `request` on `deployment` and build the contract reply.

    Raises
    ------
    ApiError
        THROTTLED when the function's queue is full (nothing ran then).
    """
    stdin = to_json({"job_id": request.job_id, "args": request.args_list()})
    try:
        outcome, cold_start = await runtime.invoke(stdin)
    except SpawnError as exc:
        deployment.record_invocation()
        return _failure(request.job_id, "FUNCTION_CRASHED", str(exc), {"cold_start": True})
    deployment.record_invocation()
    metrics: dict[str, Any] = {
        "execution_ms": round(outcome.execution_s * 1000),
        "memory_used_mb": _peak_mb(outcome),
        "cold_start": cold_start,
    }
    if outcome.timed_out:
        message = f"function timed out after {deployment.config.timeout_secs} s and was killed"
        return _failure(request.job_id, "FUNCTION_TIMEOUT", message, metrics)
    if outcome.output_overflow:
        return _failure(request.job_id, "INVALID_OUTPUT", "stdout passed the output limit", metrics)
    if outcome.exit_code != 0:
        message = f"bootstrap {_describe_exit(outcome.exit_code)}{_stderr_note(outcome)}"
        return _failure(request.job_id, "FUNCTION_CRASHED", message, metrics)
    try:
        reply = parse_bootstrap_reply(outcome.stdout)
    except ValueError as exc:
        return _failure(request.job_id, "INVALID_OUTPUT", f"{exc}{_stderr_note(outcome)}", metrics)
    if not reply.success:
        message = reply.error or "function reported failure without an error message"
        return _failure(request.job_id, "FUNCTION_ERROR", message, metrics)
    body = {"job_id": request.job_id, "result": reply.result_list(), "success": True, **metrics}
    return json_response(body)


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
