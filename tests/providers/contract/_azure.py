"""The azure executor's kind: a local fake of ARM and Kudu, and a real host per app.

The executor drives :class:`~tests.providers._azure_fake.FakeAzure` over HTTP: ARM writes
that run as async operations, a one-deploy publish per app, keys from ``listkeys``. Each
published app runs in a real process (:mod:`tests.providers._azure_host`) that calls the
generated ``function_app.py`` through the azure-functions library's own types. Behaviours are
the job's own (a handler that raises, one that outruns its timeout) or the host's (a bare
500 while the fake says so; 429 with ``Retry-After`` when the app's one instance is busy,
since ``max_concurrency`` becomes ``maximumInstanceCount``).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from textwrap import dedent

from providers._poll import PollPolicy
from providers.azure import AzureFunctionExecutor
from providers.base import FaasConfig, FaasDeployment
from providers.packaging import build_azure_package
from tests.processes import wait_until
from tests.providers._azure_fake import FakeAzure, FakeCredential
from tests.providers._azure_host import THROTTLE_RETRY_AFTER_S
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
        # Tell the driver this run holds the app's only instance, then wait for its gate.
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
_JOIN_TIMEOUT_S = 30.0
#: Waits of the fake's operations, which finish after one poll: short, with a deadline.
FAST_POLLS = PollPolicy(timeout_s=90.0, first_delay_s=0.01, max_delay_s=0.2)


def azure_executor(platform: FakeAzure, **overrides: object) -> AzureFunctionExecutor:
    """An executor of ``platform``'s subscription, reaching its hosts over plain HTTP."""
    options: dict[str, object] = {
        "credential": FakeCredential(platform),
        "arm_base_url": platform.url,
        "site_scheme": "http",
        "poll_policy": FAST_POLLS,
        **overrides,
    }
    return AzureFunctionExecutor(platform.subscription_id, "eastus", **options)  # type: ignore[arg-type]


class AzureDriver(ContractDriver):
    """Drives :class:`~providers.azure.AzureFunctionExecutor` against :class:`FakeAzure`."""

    executor: AzureFunctionExecutor
    reported_metrics = frozenset({"execution_ms", "cold_start"})
    throttle_retry_after_s = float(THROTTLE_RETRY_AFTER_S)

    def __init__(self, platform: FakeAzure, work_dir: Path, *, env_secret: str) -> None:
        self._platform = platform
        self._work_dir = work_dir
        self._env_secret = env_secret
        source = work_dir / "contract_handlers.py"
        source.write_text(_HANDLERS)
        self._packages = {
            name: build_azure_package(f"contract_handlers:{name}", sources=[source])
            for name in set(_HANDLER_OF.values())
        }
        # A timeout of 1 s is read for 1 s more before the call is given up.
        self.executor = azure_executor(platform, invoke_margin_s=1.0)
        self.secrets = (
            platform.token_secret,
            platform.key_secret,
            platform.storage_key,
            env_secret,
        )

    @contextlib.contextmanager
    def function(self, job_id: int, behaviour: Behaviour) -> Iterator[FaasDeployment]:
        job_dir = self._work_dir / f"job-{job_id}"
        job_dir.mkdir(exist_ok=True)
        with contextlib.ExitStack() as held:
            gate = FileGate(job_dir / "gate")
            held.callback(gate.open)
            config = FaasConfig(
                memory_mb=512,
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
                held.enter_context(self._platform.host_failing(self.executor.app_name(job_id)))
            if behaviour is Behaviour.THROTTLE:
                self._occupy(job_id, job_dir, gate, held)
            yield deployment

    def invocations_seen(self, job_id: int) -> int:
        return self._platform.invocations(self.executor.app_name(job_id))

    def _occupy(
        self, job_id: int, job_dir: Path, gate: FileGate, held: contextlib.ExitStack
    ) -> None:
        runner = threading.Thread(target=self.executor.invoke, args=(job_id, b"hold"), daemon=True)
        runner.start()
        held.callback(runner.join, _JOIN_TIMEOUT_S)
        held.callback(gate.open)
        wait_until(lambda: (job_dir / "held").exists(), 60.0, "the held run to take the instance")
