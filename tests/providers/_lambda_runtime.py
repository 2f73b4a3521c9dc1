"""A stand-in for Lambda's Python runtime: one execution environment, as a process.

Run as ``python _lambda_runtime.py <handler>`` with the unpacked package as the working
directory and the function's environment. It imports the handler module the way the
``python3.x`` runtime does (``Handler`` split at its last dot, at start-up: the init phase),
writes ``{"ready": true}`` once that is over, then answers one event per line of stdin by
calling ``handler(event, context)`` and writing one JSON line to stdout: the JSON-encoded
return value, or the runtime's error body
(``errorType``, ``errorMessage``, ``stackTrace``) when the handler raised, with the duration,
the process's peak memory and, on the first event only, the init duration.

The handler's own prints go to stderr (the function's log), so they cannot corrupt a reply.
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import sys
import time
import traceback
from typing import Any


class _Context:
    """The attributes of Lambda's context object that a handler may read."""

    def __init__(self, request_id: str, deadline: float) -> None:
        self.aws_request_id = request_id
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        self.invoked_function_arn = ""
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self.log_stream_name = "local"
        self.identity = None
        self.client_context = None
        self._deadline = deadline

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.time()) * 1000))


def _error_body(error: BaseException, error_type: str | None = None) -> dict[str, Any]:
    return {
        "errorMessage": str(error),
        "errorType": error_type or type(error).__name__,
        "requestId": "",
        "stackTrace": traceback.format_tb(error.__traceback__),
    }


def _load(handler_spec: str) -> tuple[Any, dict[str, Any] | None]:
    module_name, _, function_name = handler_spec.rpartition(".")
    try:
        module = importlib.import_module(module_name.replace("/", "."))
    except Exception as error:
        body = _error_body(error, "Runtime.ImportModuleError")
        body["errorMessage"] = f"Unable to import module '{module_name}': {error}"
        return None, body
    handler = getattr(module, function_name, None)
    if handler is None:
        return None, {
            "errorMessage": f"Handler '{function_name}' missing on module '{module_name}'",
            "errorType": "Runtime.HandlerNotFound",
            "stackTrace": [],
        }
    return handler, None


def main() -> None:
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.path.insert(0, os.getcwd())
    started = time.perf_counter()
    handler, init_error = _load(sys.argv[1])
    init_ms: float | None = (time.perf_counter() - started) * 1000
    # Lambda's init phase is not part of the invocation's timeout: say when it is over.
    replies.write('{"ready": true}\n')
    replies.flush()
    for line in sys.stdin:
        request = json.loads(line)
        context = _Context(request["request_id"], request["deadline"])
        began = time.perf_counter()
        failed = True
        if init_error is not None:
            body = init_error
        else:
            try:
                body = handler(request["event"], context)
                failed = False
            except Exception as error:
                traceback.print_exc()
                body = _error_body(error)
        duration_ms = (time.perf_counter() - began) * 1000
        reply = {
            "body": json.dumps(body),
            "failed": failed,
            "duration_ms": duration_ms,
            "init_ms": init_ms,
            "max_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
        init_ms = None
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


if __name__ == "__main__":
    main()
