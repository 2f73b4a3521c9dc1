"""The app the beat tests' worker and beat processes import (``--app tests.workers.warm_app``).

Job 11 runs on the reference server at ``$BLUEPRINT_TEST_WARM_FAAS_URL`` and keeps warm; job
12 is registered there too but never deployed (its health check finds it missing).
"""

from __future__ import annotations

import os

from dispatcher import Blueprint, Router
from providers.base import FaasConfig
from providers.custom import HttpFaasExecutor

FAAS_URL_ENV = "BLUEPRINT_TEST_WARM_FAAS_URL"
WARM_JOB = 11
MISSING_JOB = 12
WARM_CONFIG = FaasConfig(timeout_secs=3, memory_mb=128, keep_warm=True)
COLD_CONFIG = FaasConfig(timeout_secs=3, memory_mb=128)


def build_app() -> Blueprint:
    executor = HttpFaasExecutor(os.environ.get(FAAS_URL_ENV, "http://127.0.0.1:1"))
    executor.configure_job(WARM_JOB, WARM_CONFIG).configure_job(MISSING_JOB, COLD_CONFIG)
    blueprint = Blueprint(router=Router())
    return blueprint.with_faas_executor(WARM_JOB, executor).with_faas_executor(
        MISSING_JOB, executor
    )


app = build_app
