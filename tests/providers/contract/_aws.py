"""The aws executor's kind: moto's server as Lambda's control plane, a front that runs the code.

The front (``tests/providers/_lambda_platform.py``) runs each invocation with the function's
real package in a Lambda-like runtime process and answers with Lambda's wire, so success,
the job's own failure, the function's timeout and a function at its reserved concurrency
(``max_concurrency=1`` with one run held on a file gate) are all real runs. The one behaviour
no run can give, a Lambda service fault, is the front's scripted ``500 ServiceException``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import boto3

from providers.aws import LambdaExecutor
from providers.base import FaasConfig, FaasDeployment
from providers.packaging import build_lambda_package
from tests.providers._lambda_platform import (
    REGION,
    ROLE_ARN,
    THROTTLE_RETRY_AFTER_S,
    Answer,
    LambdaFront,
)
from tests.providers.contract._custom import CONTRACT_HANDLERS, HANDLER_OF, hold_the_only_slot
from tests.providers.contract._driver import Behaviour, ContractDriver
from tests.providers.reference_server._support import FileGate

_SERVICE_FAULT = Answer(500, "ServiceException", "Lambda was unable to handle the request.")


class AwsDriver(ContractDriver):
    """Drives :class:`~providers.aws.LambdaExecutor` against moto through the front."""

    executor: LambdaExecutor
    reported_metrics = frozenset({"execution_ms", "cold_start", "memory_used_mb", "billed_ms"})
    throttle_retry_after_s = THROTTLE_RETRY_AFTER_S

    def __init__(
        self, front: LambdaFront, work_dir: Path, *, secret_key: str, env_secret: str
    ) -> None:
        self._front = front
        self._work_dir = work_dir
        self._env_secret = env_secret
        source = work_dir / "contract_handlers.py"
        source.write_text(CONTRACT_HANDLERS)
        self._packages = {
            name: build_lambda_package(f"contract_handlers:{name}", sources=[source])
            for name in set(HANDLER_OF.values())
        }
        session = boto3.Session(
            aws_access_key_id="AKIDCONTRACT",
            aws_secret_access_key=secret_key,
            region_name=REGION,
        )
        self.executor = LambdaExecutor(REGION, ROLE_ARN, endpoint_url=front.url, session=session)
        self.secrets = (secret_key, env_secret)

    @contextlib.contextmanager
    def function(self, job_id: int, behaviour: Behaviour) -> Iterator[FaasDeployment]:
        job_dir = self._work_dir / f"job-{job_id}"
        job_dir.mkdir(exist_ok=True)
        name = self.executor.function_id(job_id)
        with contextlib.ExitStack() as held:
            gate = FileGate(job_dir / "gate")
            held.callback(gate.open)
            config = FaasConfig(
                memory_mb=256,
                # Reserved concurrency of one: a held run makes Lambda refuse the next call.
                max_concurrency=1 if behaviour is Behaviour.THROTTLE else None,
                timeout_secs=1 if behaviour is Behaviour.TIME_OUT else 60,
                env_vars={
                    "CONTRACT_SECRET": self._env_secret,
                    "CONTRACT_DIR": str(job_dir),
                    "CONTRACT_GATE": str(gate.path),
                },
            )
            package = self._packages[HANDLER_OF[behaviour]]
            deployment = self.executor.deploy_job(job_id, package, config)
            if behaviour is Behaviour.SERVER_ERROR:
                held.enter_context(self._front.always("Invoke", name, _SERVICE_FAULT))
            if behaviour is Behaviour.THROTTLE:
                hold_the_only_slot(self.executor, job_id, job_dir, gate, held)
            yield deployment

    def invocations_seen(self, job_id: int) -> int:
        return self._front.count("Invoke", self.executor.function_id(job_id))
