"""The gcp executor's kind: the local Cloud Functions platform, real functions-framework behind it.

The executor gets its tokens from google-auth with a service-account file whose token URI is
the platform's, deploys through the platform's v2 control plane, and invokes the generated
package served by functions-framework. Every behaviour is the platform's or the function's
own: a job that raises (the package's 500 failure reply), a function at its
``maxInstanceCount`` of 1 with one run held (429 with ``Retry-After``), a run past its
timeout (the front's 504); a platform 5xx is asked of the front.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from textwrap import dedent

from providers._poll import PollPolicy
from providers.base import FaasConfig, FaasDeployment
from providers.gcp import CloudFunctionExecutor, GoogleTokens
from providers.packaging import build_gcp_package
from tests.processes import wait_until
from tests.providers._gcp_platform import PROJECT, REGION, THROTTLE_RETRY_AFTER_S, GcpPlatform
from tests.providers.contract._driver import Behaviour, ContractDriver
from tests.providers.reference_server._support import FileGate

_HANDLERS = dedent(
    """
    import fcntl
    import os
    import threading


    def reverse(payload):
        return payload[::-1]


    def fail(payload):
        raise RuntimeError("the contract function failed on purpose")


    def hold(payload):
        # Tell the driver this run holds the function's only instance, then wait for its gate.
        open(os.path.join(os.environ["CONTRACT_DIR"], "held"), "w").close()
        with open(os.environ["CONTRACT_GATE"]) as gate:
            fcntl.flock(gate, fcntl.LOCK_SH)
        return payload[::-1]


    def overrun(payload):
        threading.Event().wait(120)
        return payload
    """
)
_HANDLER_OF = {
    Behaviour.SUCCEED: "reverse",
    Behaviour.FAIL: "fail",
    Behaviour.THROTTLE: "hold",
    Behaviour.SERVER_ERROR: "reverse",
    Behaviour.TIME_OUT: "overrun",
}
#: Operations are polled quickly: the platform's are done as soon as the function serves.
FAST_POLLS = PollPolicy(timeout_s=120.0, first_delay_s=0.02, max_delay_s=0.2)
_JOIN_TIMEOUT_S = 30.0


def platform_executor(platform: GcpPlatform) -> CloudFunctionExecutor:
    """An executor of the platform's project, authenticated by its service-account file."""
    return CloudFunctionExecutor(
        PROJECT,
        REGION,
        credentials=GoogleTokens(credentials_file=platform.service_account_file),
        api_base_url=platform.base_url,
        poll_policy=FAST_POLLS,
    )


class GcpDriver(ContractDriver):
    """Drives :class:`~providers.gcp.CloudFunctionExecutor` against :class:`GcpPlatform`."""

    executor: CloudFunctionExecutor
    reported_metrics = frozenset({"execution_ms", "cold_start"})
    throttle_retry_after_s = float(THROTTLE_RETRY_AFTER_S)

    def __init__(self, platform: GcpPlatform, work_dir: Path, *, env_secret: str) -> None:
        self._platform = platform
        self._work_dir = work_dir
        self._env_secret = env_secret
        source = work_dir / "contract_handlers.py"
        source.write_text(_HANDLERS)
        self._packages = {
            name: build_gcp_package(f"contract_handlers:{name}", sources=[source])
            for name in set(_HANDLER_OF.values())
        }
        self.executor = platform_executor(platform)
        self.secrets = (env_secret,)

    @contextlib.contextmanager
    def function(self, job_id: int, behaviour: Behaviour) -> Iterator[FaasDeployment]:
        job_dir = self._work_dir / f"job-{job_id}"
        job_dir.mkdir(exist_ok=True)
        with contextlib.ExitStack() as held:
            # Tokens are issued as the test runs; whatever was issued must not leak either.
            held.callback(self._note_issued_tokens)
            gate = FileGate(job_dir / "gate")
            held.callback(gate.open)
            config = FaasConfig(
                memory_mb=256,
                # One instance, so one held run makes the platform refuse the next call.
                max_concurrency=1 if behaviour is Behaviour.THROTTLE else None,
                timeout_secs=1 if behaviour is Behaviour.TIME_OUT else 60,
                env_vars={
                    "CONTRACT_SECRET": self._env_secret,
                    "CONTRACT_DIR": str(job_dir),
                    "CONTRACT_GATE": str(gate.path),
                },
            )
            package = self._packages[_HANDLER_OF[behaviour]]
            deployment = self.executor.deploy_job(job_id, package, config)
            if behaviour is Behaviour.SERVER_ERROR:
                held.enter_context(self._platform.failing(self.executor.function_id(job_id)))
            if behaviour is Behaviour.THROTTLE:
                self._occupy(job_id, job_dir, gate, held)
            yield deployment

    def invocations_seen(self, job_id: int) -> int:
        return self._platform.invocations(self.executor.function_id(job_id))

    def _note_issued_tokens(self) -> None:
        self.secrets = (self._env_secret, *self._platform.issued_tokens())

    def _occupy(
        self, job_id: int, job_dir: Path, gate: FileGate, held: contextlib.ExitStack
    ) -> None:
        # Callbacks run last in, first out: on exit the gate opens, then the run is joined.
        runner = threading.Thread(target=self.executor.invoke, args=(job_id, b"hold"), daemon=True)
        runner.start()
        held.callback(runner.join, _JOIN_TIMEOUT_S)
        held.callback(gate.open)
        wait_until(lambda: (job_dir / "held").exists(), 60.0, "the held run to take the instance")
