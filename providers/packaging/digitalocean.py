"""DigitalOcean Functions' runtime: an OpenWhisk Python zip action with ``__main__.py`` at its root.

The runtime imports ``__main__`` and calls ``main`` with the invocation's parameters (the
request ``{"job_id", "args"}`` merged over the action's own parameters) and sends back the dict
it returns. A dict with an ``error`` key is OpenWhisk's application-error convention, which the
handler core's failure reply already follows (``{"success": false, "error": ...}``).

OpenWhisk actions have no environment of their own, so a job's ``env_vars`` travel as one
action parameter, :data:`ENV_PARAMETER`, that ``main`` exports into ``os.environ`` before it
loads the handler. Action parameters are readable by anyone who can read the namespace: they
are not a secret store.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from providers.packaging._core import HANDLER_CORE_MODULE, python_package
from providers.packaging._zip import Entry

__all__ = ["ACTION_ENTRY_POINT", "ACTION_MAIN", "ENV_PARAMETER", "build_digitalocean_package"]

#: The file the OpenWhisk Python runtime runs from a zip action.
ACTION_ENTRY_POINT = "__main__.py"
#: The function of :data:`ACTION_ENTRY_POINT` the runtime calls (the action's ``exec.main``).
ACTION_MAIN = "main"
#: The action parameter holding the job's ``env_vars`` as an object of strings.
ENV_PARAMETER = "__blueprint_env"

# The handler is loaded at the first call, after the env vars are exported, so a handler that
# reads its environment at import sees them. DigitalOcean documents main(event, context) and
# upstream OpenWhisk main(args): both call forms are accepted.
_MAIN_TEMPLATE = '''\
"""DigitalOcean Functions (OpenWhisk) adapter: runs HANDLER on the invocation's parameters."""
import json
import os

import {core}

HANDLER = {handler!r}
ENV_PARAMETER = {env_parameter!r}
_loaded = None


def {main}(args, context=None):
    global _loaded
    env = args.pop(ENV_PARAMETER, None)
    if isinstance(env, dict):
        os.environ.update({{str(name): str(value) for name, value in env.items()}})
    if _loaded is None:
        _loaded = {core}.try_load_handler(HANDLER)
    handler, load_error = _loaded
    return json.loads({core}.answer_request(handler, load_error, args))
'''


def build_digitalocean_package(handler: str, *, sources: Sequence[str | Path]) -> bytes:
    """Build a DigitalOcean Functions zip action that runs the Python ``handler``.

    Parameters
    ----------
    handler:
        ``module:function``, e.g. ``"jobs.square:run"``; the function takes and returns bytes.
    sources:
        Files and folders to ship, as :func:`providers.packaging.build_custom_package` takes
        them. The raw OpenWhisk API does no remote build: dependencies must be in the zip
        (pure Python, or a ``virtualenv`` folder built for the runtime's image).

    Returns
    -------
    bytes
        The zip, ready for :meth:`providers.digitalocean.DigitalOceanExecutor.deploy_job`.

    Raises
    ------
    InvalidConfig
        ``handler`` is not ``module:function``, a source is missing or clashes with another
        entry, or the handler's top-level module is not among ``sources``.
    """
    source = _MAIN_TEMPLATE.format(
        core=HANDLER_CORE_MODULE, handler=handler, env_parameter=ENV_PARAMETER, main=ACTION_MAIN
    )
    return python_package(handler, sources, {ACTION_ENTRY_POINT: Entry(source.encode("utf-8"))})
