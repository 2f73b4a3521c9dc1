"""An app whose jobs 7 (reverse) and 8 (fails) run on Azure: the fake ARM of the e2e test.

Workers import it with ``--app tests.workers.azure_app``. The ARM token comes from the
environment (a worker host's own credentials, here a token the fake issued), the ARM URL and
subscription too; everything else the executor reads from ARM.
"""

from __future__ import annotations

import os
import time
from typing import Any, NamedTuple

from dispatcher import Blueprint, Router
from providers.azure import AzureFunctionExecutor
from providers.base import FaasConfig

ARM_URL_ENV = "BLUEPRINT_TEST_AZURE_ARM_URL"
SUBSCRIPTION_ENV = "BLUEPRINT_TEST_AZURE_SUBSCRIPTION"
TOKEN_ENV = "BLUEPRINT_TEST_AZURE_TOKEN"
REVERSE_JOB, FAILING_JOB = 7, 8
#: Small, so the tests' visibility timeout (FAST_KNOBS) stays above the time limits.
CONFIG = FaasConfig(memory_mb=512, timeout_secs=3)


class _Token(NamedTuple):
    token: str
    expires_on: int


class EnvironmentToken:
    """A credential handing out the token in ``$BLUEPRINT_TEST_AZURE_TOKEN``."""

    def get_token(self, *scopes: str, **kwargs: Any) -> _Token:
        return _Token(os.environ[TOKEN_ENV], int(time.time()) + 3600)


def build_app() -> Blueprint:
    executor = AzureFunctionExecutor(
        os.environ.get(SUBSCRIPTION_ENV, "sub-0001"),
        "eastus",
        credential=EnvironmentToken(),
        arm_base_url=os.environ.get(ARM_URL_ENV, "http://127.0.0.1:1"),
        site_scheme="http",
    )
    blueprint = Blueprint(router=Router())
    for job_id in (REVERSE_JOB, FAILING_JOB):
        blueprint.with_faas_executor(job_id, executor.configure_job(job_id, CONFIG))
    return blueprint


app = build_app
