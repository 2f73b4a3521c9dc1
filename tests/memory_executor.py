"""An executor that answers from memory: enough to test what sits on top of the interface.

Used where the thing under test is our own shared policy (the base class, the registry), not
a provider; provider behaviour is tested against real servers.
"""

from __future__ import annotations

from typing import ClassVar

from providers.base import FaasConfig, FaasDeployment, FaasExecutor, InvokeReply, function_name
from providers.limits import ProviderLimits


class MemoryExecutor(FaasExecutor):
    """Answers every invoke with the payload reversed and records what reached it.

    Its requests are the payload itself (nothing is encoded), capped at 8 bytes.
    """

    provider_name = "memory"
    default_limits: ClassVar[ProviderLimits] = ProviderLimits(max_request_bytes=8)

    def __init__(self, *, limits: ProviderLimits | None = None) -> None:
        super().__init__(limits=limits)
        self.invoked: list[tuple[int, bytes]] = []
        self.deployed: list[int] = []

    def _request_size(self, job_id: int, payload: bytes) -> int:
        return len(payload)

    def _invoke(self, job_id: int, payload: bytes) -> InvokeReply:
        self.invoked.append((job_id, payload))
        return InvokeReply(body=payload[::-1], execution_ms=1.5, cold_start=False)

    def _deploy_job(self, job_id: int, package: bytes, config: FaasConfig) -> FaasDeployment:
        self.deployed.append(job_id)
        return FaasDeployment(
            function_id=function_name(job_id),
            job_id=job_id,
            provider=self.provider_name,
            endpoint=None,
            memory_mb=config.memory_mb,
            timeout_secs=config.timeout_secs,
        )

    def _health_check(self, job_id: int) -> bool:
        return True

    def _warm(self, job_id: int, instances: int) -> int:
        return instances

    def _get_deployment(self, job_id: int) -> FaasDeployment:
        raise NotImplementedError

    def _undeploy_job(self, job_id: int) -> None:
        return None
