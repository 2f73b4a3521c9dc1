"""Deployment packages built from a Python handler ``module:function`` (bytes in, bytes out).

Every provider runs code under its own contract, so a package is one shared *handler core*
(``_core``: load the handler, answer the request ``{"job_id", "args"}`` with the reply
``{"result": [...]}``) plus a thin *adapter* per runtime that moves that request and reply in
and out of the runtime, all written by one reproducible zip writer (``_zip``).

Adapters, one module each: :mod:`providers.packaging.custom` (the Custom FaaS contract's
executable ``bootstrap``), :mod:`providers.packaging.aws` (a module whose
``handler(event, context)`` AWS Lambda's Python runtime calls),
:mod:`providers.packaging.azure` (an Azure Functions Python v2 app, ``function_app.py``),
:mod:`providers.packaging.digitalocean` (an OpenWhisk Python zip action's ``__main__.py``),
:mod:`providers.packaging.gcp` (a Cloud Functions source zip served by functions-framework).
A new runtime is one more module here whose builder hands its entry-point source to
``_core.python_package``; its provider names that builder in its ``PROVIDER`` declaration
(:mod:`providers.registry`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from providers.packaging._core import HANDLER_CORE_MODULE, WARMUP_REQUEST
from providers.packaging._zip import load_prebuilt
from providers.packaging.aws import LAMBDA_HANDLER, build_lambda_package
from providers.packaging.azure import build_azure_package
from providers.packaging.custom import (
    BOOTSTRAP_NAME,
    DEFAULT_PYTHON,
    build_custom_package,
    build_shell_package,
)
from providers.packaging.digitalocean import ENV_PARAMETER, build_digitalocean_package
from providers.packaging.gcp import ENTRY_POINT, build_gcp_package

__all__ = [  # noqa: RUF022  (grouped by purpose)
    # What every package shares
    "HANDLER_CORE_MODULE",
    "WARMUP_REQUEST",
    "PackageBuilder",
    "load_prebuilt",
    # The Custom FaaS contract's runtime
    "BOOTSTRAP_NAME",
    "DEFAULT_PYTHON",
    "build_custom_package",
    "build_shell_package",
    # AWS Lambda's Python runtime
    "LAMBDA_HANDLER",
    "build_lambda_package",
    # Azure Functions' Python runtime
    "build_azure_package",
    # DigitalOcean Functions' OpenWhisk Python runtime
    "ENV_PARAMETER",
    "build_digitalocean_package",
    # Cloud Functions (2nd gen)
    "ENTRY_POINT",
    "build_gcp_package",
]


class PackageBuilder(Protocol):
    """Builds a provider-ready zip from a handler ``module:function`` and the files to ship.

    Raises :class:`~providers.errors.InvalidConfig` for a bad handler or a missing source.
    """

    def __call__(self, handler: str, *, sources: Sequence[str | Path]) -> bytes: ...
