"""Dispatch Blueprint jobs to local Celery workers or FaaS providers, job by job.

Public names load on first use (PEP 562): ``blueprint-faas worker --pool gevent`` must
monkey-patch the process before asyncio, ssl or Celery load, and the CLI lives in this
package.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dispatcher.app import Blueprint, load_app
    from dispatcher.errors import (
        ConfigError,
        DecodeError,
        DispatcherError,
        InvalidJobCall,
        NotAFaasJob,
        ProviderMismatch,
        UnknownJob,
    )
    from dispatcher.jobs import LOCAL, JobCall, JobError, JobResult, ResultStatus
    from dispatcher.keys import job_queue
    from dispatcher.placement import Placement, PlacementReason
    from dispatcher.registry import FaasRegistry
    from dispatcher.router import JobContext, Router
    from dispatcher.runner import (
        BlueprintRunner,
        BlueprintRunnerBuilder,
        Consumer,
        Producer,
        RunSummary,
        submit,
    )
    from dispatcher.settings import Settings, redact_url

__all__ = [  # noqa: RUF022  (grouped by purpose)
    # The job model
    "LOCAL",
    "JobCall",
    "JobError",
    "JobResult",
    "ResultStatus",
    # Defining an app
    "Blueprint",
    "FaasRegistry",
    "JobContext",
    "Placement",
    "PlacementReason",
    "Router",
    "load_app",
    # Settings
    "Settings",
    "redact_url",
    # Running
    "BlueprintRunner",
    "BlueprintRunnerBuilder",
    "Consumer",
    "Producer",
    "RunSummary",
    "job_queue",
    "submit",
    # Errors
    "ConfigError",
    "DecodeError",
    "DispatcherError",
    "InvalidJobCall",
    "NotAFaasJob",
    "ProviderMismatch",
    "UnknownJob",
]

_MODULE_OF = {
    **dict.fromkeys(("LOCAL", "JobCall", "JobError", "JobResult", "ResultStatus"), "jobs"),
    **dict.fromkeys(("Blueprint", "load_app"), "app"),
    "FaasRegistry": "registry",
    **dict.fromkeys(("Placement", "PlacementReason"), "placement"),
    **dict.fromkeys(("JobContext", "Router"), "router"),
    **dict.fromkeys(("Settings", "redact_url"), "settings"),
    **dict.fromkeys(
        (
            "BlueprintRunner",
            "BlueprintRunnerBuilder",
            "Consumer",
            "Producer",
            "RunSummary",
            "submit",
        ),
        "runner",
    ),
    "job_queue": "keys",
    **dict.fromkeys(
        (
            "ConfigError",
            "DecodeError",
            "DispatcherError",
            "InvalidJobCall",
            "NotAFaasJob",
            "ProviderMismatch",
            "UnknownJob",
        ),
        "errors",
    ),
}


def __getattr__(name: str) -> Any:
    try:
        module = _MODULE_OF[name]
    except KeyError:
        raise AttributeError(f"module 'dispatcher' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f"dispatcher.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
