"""Azure Functions' Python runtime: a v2-model app with one HTTP route, ``function_app.py``.

The Functions host loads ``function_app.py`` from the zip root, finds the ``FunctionApp``
object it builds, and routes ``POST /api/<route>`` (function-level auth: the
``x-functions-key`` header) to the function registered there, which hands the body to the
handler core and returns its reply. There is no ``function.json`` in the v2 model.

``host.json`` carries a ``functionTimeout``; the executor sets the job's own timeout as the
app setting ``AzureFunctionsJobHost__functionTimeout``, which overrides it, so one package
serves any config. Dependencies: with a remote build (``RemoteBuild=true`` on publish) the
platform installs ``requirements.txt``; without one, ship them vendored as a
``.python_packages/lib/site-packages`` folder among the sources (``pip install --target``),
where the host looks for them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from providers.errors import InvalidConfig
from providers.packaging._core import HANDLER_CORE_MODULE, python_package
from providers.packaging._zip import Entry

__all__ = [
    "AZURE_APP_MODULE",
    "AZURE_FUNCTION_NAME",
    "AZURE_FUNCTION_ROUTE",
    "DEFAULT_FUNCTION_TIMEOUT_S",
    "build_azure_package",
    "function_timeout_text",
]

AZURE_APP_MODULE = "function_app"
#: The function's name (as ARM lists it) and its route, ``/api/blueprint``: one per app.
AZURE_FUNCTION_NAME = "blueprint"
AZURE_FUNCTION_ROUTE = "blueprint"
#: The HTTP response cap (230 s) is what bounds a synchronous call; the host's own limit
#: matches it unless the executor sets the job's.
DEFAULT_FUNCTION_TIMEOUT_S = 230

_EXTENSION_BUNDLE = {"id": "Microsoft.Azure.Functions.ExtensionBundle", "version": "[4.*, 5.0.0)"}
_REQUIREMENT = "azure-functions"

# A handler failure is a structured reply with status 500; success and warm-up replies are
# 200. The core writes success replies compactly ('"success":true'), failures through
# json.dumps ('"success": false', quotes inside messages escaped), so the test is exact.
_FUNCTION_APP_TEMPLATE = '''\
"""Azure Functions adapter (Python v2 model): one HTTP route that runs HANDLER."""
import azure.functions as func

import {core}

HANDLER = {handler!r}

# Loaded at import, which the host does once per worker process: the first request after it
# is the process's fresh one.
_handler, _load_error = {core}.try_load_handler(HANDLER)

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


@app.function_name(name={name!r})
@app.route(route={route!r}, methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def blueprint(req: func.HttpRequest) -> func.HttpResponse:
    reply = {core}.answer(_handler, _load_error, req.get_body())
    status = 200 if '"success":true' in reply else 500
    return func.HttpResponse(reply, status_code=status, mimetype="application/json")
'''


def build_azure_package(
    handler: str,
    *,
    sources: Sequence[str | Path],
    requirements: Sequence[str] = (),
    function_timeout_s: int = DEFAULT_FUNCTION_TIMEOUT_S,
) -> bytes:
    """Build an Azure Functions Python app zip (v2 model) that runs ``handler``.

    Parameters
    ----------
    handler:
        ``module:function``; the function takes and returns bytes.
    sources:
        Files and folders to ship, as :func:`providers.packaging.build_custom_package` takes
        them; a ``.python_packages`` folder carries vendored dependencies.
    requirements:
        Extra lines of ``requirements.txt`` (after ``azure-functions``), installed only by a
        remote build.
    function_timeout_s:
        ``host.json``'s ``functionTimeout``; the executor's app setting overrides it.

    Raises
    ------
    InvalidConfig
        As :func:`~providers.packaging.build_custom_package`, or a requirement that is not one
        line, or a timeout that is not positive.
    """
    if function_timeout_s < 1:
        raise InvalidConfig(f"function_timeout_s must be positive, got {function_timeout_s}")
    lines = [_REQUIREMENT, *requirements]
    if any("\n" in line or not line.strip() for line in lines):
        raise InvalidConfig("each requirement must be one non-empty line")
    app = _FUNCTION_APP_TEMPLATE.format(
        core=HANDLER_CORE_MODULE,
        handler=handler,
        name=AZURE_FUNCTION_NAME,
        route=AZURE_FUNCTION_ROUTE,
    )
    host = {
        "version": "2.0",
        "extensionBundle": _EXTENSION_BUNDLE,
        "functionTimeout": function_timeout_text(function_timeout_s),
    }
    adapter = {
        f"{AZURE_APP_MODULE}.py": Entry(app.encode("utf-8")),
        "host.json": Entry(json.dumps(host, indent=2).encode("utf-8")),
        "requirements.txt": Entry(("\n".join(lines) + "\n").encode("utf-8")),
    }
    return python_package(handler, sources, adapter)


def function_timeout_text(seconds: int) -> str:
    """``seconds`` as the host's ``hh:mm:ss`` timespan (``functionTimeout``)."""
    hours, rest = divmod(seconds, 3600)
    return f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"
