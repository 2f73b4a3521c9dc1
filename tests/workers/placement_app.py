"""The app of the placement tests' worker processes: one job per policy on a switchable function.

Job ids (each local handler sleeps ``args`` as u32 ms and returns them, as the function does):
10 ``local_with_faas_overflow`` · 11 ``faas_with_local_fallback`` · 12 ``faas`` ·
13 ``faas`` on a scope with a concurrency budget of :data:`BUDGET` (another URL path of the
same server, so its breaker and budget are its own).
"""

from __future__ import annotations

import os
import time

from dispatcher import Blueprint, Router
from dispatcher.placement import Placement
from providers.base import FaasConfig
from providers.custom import LIMITS, HttpFaasExecutor

SWITCH_URL_ENV = "BLUEPRINT_TEST_SWITCH_URL"
FAAS_CONFIG = FaasConfig(timeout_secs=3, memory_mb=128)
BUDGET = 2
OVERFLOW, FALLBACK, FAAS_ONLY, BUDGETED = 10, 11, 12, 13

router = Router()


def nap(args: bytes) -> bytes:
    time.sleep(int.from_bytes(args, "big") / 1000)
    return args


for _job_id in (OVERFLOW, FALLBACK):
    router.add(_job_id, nap)


def build_app() -> Blueprint:
    url = os.environ.get(SWITCH_URL_ENV, "http://127.0.0.1:1")
    plain = HttpFaasExecutor(url)
    budgeted = HttpFaasExecutor(
        f"{url}/budgeted", limits=LIMITS.model_copy(update={"max_account_concurrency": BUDGET})
    )
    blueprint = Blueprint(
        router=router,
        placements={
            OVERFLOW: Placement.LOCAL_WITH_FAAS_OVERFLOW,
            FALLBACK: Placement.FAAS_WITH_LOCAL_FALLBACK,
        },
    )
    for job_id, executor in (
        (OVERFLOW, plain),
        (FALLBACK, plain),
        (FAAS_ONLY, plain),
        (BUDGETED, budgeted),
    ):
        executor.configure_job(job_id, FAAS_CONFIG)
        blueprint.with_faas_executor(job_id, executor)
    return blueprint


app = build_app
