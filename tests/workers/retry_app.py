"""The app of the local-retry tests (``--app tests.workers.retry_app``): one local job, no FaaS.

Job 21 raises a retryable FaasError on its first attempt, as a handler that hit a rate limit
may on purpose, then echoes its args. It lives apart from :mod:`tests.workers.apps`, whose
job list other tests enumerate.
"""

from __future__ import annotations

from dispatcher import Blueprint, JobContext, Router
from providers.errors import Throttled

BUSY_ONCE_JOB = 21

router = Router()


@router.job(BUSY_ONCE_JOB)
def busy_once(args: bytes, ctx: JobContext) -> bytes:
    if ctx.attempt == 1:
        raise Throttled("busy on the first attempt")
    return args


def build_app() -> Blueprint:
    return Blueprint(router=router)


app = build_app
