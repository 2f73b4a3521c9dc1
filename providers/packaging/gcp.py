"""Cloud Functions (2nd gen) runtime: a source zip that functions-framework serves over HTTP.

Cloud Build installs ``requirements.txt`` and the ``python3xx`` runtime starts
functions-framework on ``main.py``, whose HTTP entry point (:data:`ENTRY_POINT`) hands the
request body to the handler core and answers with its reply: 200 for a result or a warm-up,
500 with the core's JSON failure reply when the job raised (never functions-framework's HTML
error page, so the executor can tell the job's failure from the platform's).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from providers.packaging._core import HANDLER_CORE_MODULE, python_package
from providers.packaging._zip import Entry

__all__ = ["ENTRY_POINT", "FUNCTIONS_FRAMEWORK_REQUIREMENT", "build_gcp_package"]

#: The function ``main.py`` defines: the deploy's ``buildConfig.entryPoint``.
ENTRY_POINT = "blueprint_entry"
#: What ``requirements.txt`` asks Cloud Build to install.
FUNCTIONS_FRAMEWORK_REQUIREMENT = "functions-framework>=3.5,<4"

_MAIN_TEMPLATE = '''\
"""Cloud Functions (2nd gen) adapter: serves HANDLER through functions-framework."""
import functions_framework

import {core}

HANDLER = {handler!r}
_JSON = {{"Content-Type": "application/json"}}
# Loaded when the instance imports main.py, so a cold start pays it before its first request.
_handler, _load_error = {core}.try_load_handler(HANDLER)


@functions_framework.http
def {entry_point}(request):
    reply, ok = {core}.answer_with_outcome(_handler, _load_error, request.get_data())
    return reply, 200 if ok else 500, _JSON
'''


def build_gcp_package(handler: str, *, sources: Sequence[str | Path]) -> bytes:
    """Build a Cloud Functions source zip that runs the Python ``handler``.

    The zip holds ``main.py`` (the functions-framework entry point :data:`ENTRY_POINT`),
    ``requirements.txt``, the handler core and ``sources``. Add the handler's own
    dependencies to the sources' folder or vendor them; ``requirements.txt`` names only
    functions-framework.

    Parameters
    ----------
    handler:
        ``module:function``, e.g. ``"jobs.square:run"``; the function takes and returns bytes.
    sources:
        Files and folders to ship, laid out as :func:`providers.packaging.build_custom_package`
        lays them.

    Returns
    -------
    bytes
        The zip, ready for :meth:`providers.gcp.CloudFunctionExecutor.deploy_job`.

    Raises
    ------
    InvalidConfig
        ``handler`` is not ``module:function``, a source is missing or clashes with another
        entry (``main.py`` included), or the handler's module is not among ``sources``.
    """
    main = _MAIN_TEMPLATE.format(handler=handler, core=HANDLER_CORE_MODULE, entry_point=ENTRY_POINT)
    adapter = {
        "main.py": Entry(main.encode("utf-8")),
        "requirements.txt": Entry(f"{FUNCTIONS_FRAMEWORK_REQUIREMENT}\n".encode()),
    }
    return python_package(handler, sources, adapter)
