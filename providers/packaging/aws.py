"""The AWS Lambda Python runtime: a module whose ``handler(event, context)`` Lambda calls.

Lambda's ``python3.x`` runtimes import the module named by the function's ``Handler``
(``blueprint_lambda.handler``, split at the last dot) once per execution environment and call
``handler(event, context)`` with each event already decoded from JSON; what it returns is
encoded to JSON again, and an exception that escapes it makes the invocation fail with
``FunctionError: Unhandled`` and a body holding ``errorType`` and ``errorMessage``.

The generated module loads the job's handler at import, so the import is part of Lambda's
``Init Duration`` (a cold start), not of the first job's duration.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from providers.packaging._core import HANDLER_CORE_MODULE, python_package
from providers.packaging._zip import Entry

__all__ = ["LAMBDA_ENTRY_MODULE", "LAMBDA_HANDLER", "build_lambda_package"]

LAMBDA_ENTRY_MODULE = "blueprint_lambda"
#: The ``Handler`` of a function built by :func:`build_lambda_package`.
LAMBDA_HANDLER = f"{LAMBDA_ENTRY_MODULE}.handler"

# The job's own exception propagates unchanged, so Lambda's error body names its type and
# message (``ZeroDivisionError: ...``), not ours. The core's failure reply is used only to
# learn that the request failed; what it printed on stderr is the function's log.
_ENTRY_TEMPLATE = '''\
"""AWS Lambda adapter: runs HANDLER on each event the Lambda Python runtime passes in."""
import json

import {core}

HANDLER = {handler!r}

# At import: Lambda counts it in the init phase of a cold start.
_handler, _load_error = {core}.try_load_handler(HANDLER)


class BlueprintRequestError(Exception):
    """The event was not a job request, or the job's reply could not be made."""


def handler(event, context):
    raised = []

    def run(payload):
        try:
            return _handler(payload)
        except Exception as error:
            raised.append(error)
            raise

    reply = json.loads({core}.answer_request(run, _load_error, event))
    if reply.get("success") is False:
        if raised:
            raise raised[0]
        if _load_error is not None:
            raise _load_error
        raise BlueprintRequestError(reply.get("error"))
    return reply
'''


def build_lambda_package(handler: str, *, sources: Sequence[str | Path]) -> bytes:
    """Build a zip for Lambda's ``python3.x`` runtimes that runs the Python ``handler``.

    The zip holds ``blueprint_lambda.py`` (the function's ``Handler`` is
    :data:`LAMBDA_HANDLER`), the handler core and ``sources``. Each event
    ``{"job_id", "args"}`` is answered with ``{"job_id", "result": [...], "success": true,
    "fresh", "handler_ms"}``; the warm-up event is answered without running the job; a job
    that raises fails the invocation with its own exception.

    Parameters
    ----------
    handler:
        ``module:function``, e.g. ``"jobs.square:run"``; the function takes and returns bytes.
    sources:
        Files and folders to ship, laid out as :func:`providers.packaging.build_custom_package`
        lays them out.

    Raises
    ------
    InvalidConfig
        ``handler`` is not ``module:function``, a source is missing or clashes with another
        entry, or the handler's top-level module is not among ``sources``.
    """
    entry = _ENTRY_TEMPLATE.format(handler=handler, core=HANDLER_CORE_MODULE)
    adapter = {f"{LAMBDA_ENTRY_MODULE}.py": Entry(entry.encode("utf-8"))}
    return python_package(handler, sources, adapter)
