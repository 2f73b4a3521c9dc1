"""The app definition the integration tests' worker processes import (``--app``).

Job ids:
0 square locally · 1 square on the reference server · 2 echo args, metadata and attempt ·
3 raise (the job's own failure) · 4 sleep, counting starts, runs and concurrency in Redis ·
5 the flaky test HTTP function · 6 a function that fails on the reference server.
"""

from __future__ import annotations

import json
import os
import time

import redis

from dispatcher import Blueprint, JobContext, Router
from dispatcher._squaring import square
from providers.base import FaasConfig
from providers.custom import HttpFaasExecutor

FAAS_URL_ENV = "BLUEPRINT_TEST_FAAS_URL"
FLAKY_URL_ENV = "BLUEPRINT_TEST_FLAKY_URL"
COUNTER_REDIS_ENV = "BLUEPRINT_TEST_COUNTER_REDIS"
#: FaaS timeouts stay small so the tests' visibility timeout (and redelivery) stays short.
FAAS_CONFIG = FaasConfig(timeout_secs=3, memory_mb=128)

router = Router()
router.add(0, square)


@router.job(2)
def echo(args: bytes, ctx: JobContext) -> bytes:
    reply = {"args_hex": args.hex(), "metadata": dict(ctx.metadata), "attempt": ctx.attempt}
    return json.dumps(reply, sort_keys=True).encode()


@router.job(3)
def fail(args: bytes) -> bytes:
    raise ValueError("the job failed on purpose")


_counters: redis.Redis | None = None


@router.job(4)
def sleep(args: bytes, ctx: JobContext) -> bytes:
    """Sleep ``args`` (u32 ms); record start, end and how many ran at once."""
    global _counters
    if _counters is None:
        _counters = redis.Redis.from_url(os.environ[COUNTER_REDIS_ENV])
    prefix = os.environ.get("BLUEPRINT_TEST_COUNTER_PREFIX", "t")
    _counters.incr(f"{prefix}:started:{ctx.call_id}")
    running = _counters.incr(f"{prefix}:running")
    _counters.rpush(f"{prefix}:running_samples", running)
    try:
        time.sleep(int.from_bytes(args, "big") / 1000)
    finally:
        _counters.decr(f"{prefix}:running")
    _counters.incr(f"{prefix}:finished:{ctx.call_id}")
    return str(os.getpid()).encode()


def build_app() -> Blueprint:
    blueprint = Blueprint(router=router)
    faas = HttpFaasExecutor(os.environ.get(FAAS_URL_ENV, "http://127.0.0.1:1"))
    flaky = HttpFaasExecutor(os.environ.get(FLAKY_URL_ENV, "http://127.0.0.1:1"))
    for job_id, executor in ((1, faas), (5, flaky), (6, faas)):
        executor.configure_job(job_id, FAAS_CONFIG)
        blueprint.with_faas_executor(job_id, executor)
    return blueprint


app = build_app
