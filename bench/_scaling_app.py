"""The app ``bench/scaling.py``'s workers serve: job 1 forwarded to the sleeping function."""

from __future__ import annotations

import os

from dispatcher import Blueprint
from providers.base import FaasConfig
from providers.custom import HttpFaasExecutor

_executor = HttpFaasExecutor(os.environ.get("BENCH_FUNCTION_URL", "http://127.0.0.1:1"))
_executor.configure_job(1, FaasConfig(timeout_secs=10))
app = Blueprint().with_faas_executor(1, _executor)
