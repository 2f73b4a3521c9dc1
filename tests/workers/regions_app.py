"""The app of the regional-pricing test (``--app tests.workers.regions_app``).

Jobs 31 and 32 run on two executors of one priced provider in two regions whose list prices
differ (Lambda in us-east-1 and af-south-1), so the ledger must show two prices for the same
work. The executors answer from memory: what is under test is the observer's pricing.
"""

from __future__ import annotations

from typing import ClassVar

from dispatcher import Blueprint, FaasRegistry, Router
from providers.base import FaasConfig
from providers.limits import NO_LIMITS, ProviderLimits
from tests.memory_executor import MemoryExecutor

STANDARD_REGION_JOB = 31
DEARER_REGION_JOB = 32
REGIONS = {STANDARD_REGION_JOB: "us-east-1", DEARER_REGION_JOB: "af-south-1"}
MEMORY_MB = 1024


class RegionalExecutor(MemoryExecutor):
    """A memory executor that says it is Lambda in ``region``."""

    provider_name = "aws"
    default_limits: ClassVar[ProviderLimits] = NO_LIMITS

    def __init__(self, region: str) -> None:
        super().__init__()
        self._region = region

    @property
    def region(self) -> str:
        return self._region


def build_app() -> Blueprint:
    registry = FaasRegistry()
    for job_id, region in REGIONS.items():
        executor = RegionalExecutor(region).configure_job(
            job_id, FaasConfig(memory_mb=MEMORY_MB, timeout_secs=2)
        )
        registry.register(job_id, executor)
    return Blueprint(router=Router(), registry=registry)


app = build_app
