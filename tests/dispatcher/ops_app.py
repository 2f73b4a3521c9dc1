"""The app the operations tests load with ``--app``: one local job and three FaaS jobs.

0 squares locally · 7 and 9 run on the reference server (deployed by the tests) · 8 runs on
a platform that is down (nothing listens on port 1).
"""

from __future__ import annotations

import os

from dispatcher import Blueprint, Router
from dispatcher._squaring import square
from providers.custom import HttpFaasExecutor
from tests.workers.apps import FAAS_CONFIG, FAAS_URL_ENV

DOWN_URL = "http://127.0.0.1:1"
router = Router()
router.add(0, square)


def build_app() -> Blueprint:
    blueprint = Blueprint(router=router)
    faas = HttpFaasExecutor(os.environ.get(FAAS_URL_ENV, DOWN_URL))
    down = HttpFaasExecutor(DOWN_URL, connect_timeout_s=2)
    for job_id, executor in ((7, faas), (8, down), (9, faas)):
        executor.configure_job(job_id, FAAS_CONFIG)
        blueprint.with_faas_executor(job_id, executor)
    return blueprint


app = build_app
