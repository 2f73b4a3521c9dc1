"""The digitalocean executor's kind: the local fake of DigitalOcean Functions, running actions.

The fake (``tests/providers/_digitalocean_fake.py``) serves the v2 namespaces API and the
namespace's OpenWhisk API, and runs each deployed zip in worker processes, so success, a job
that raises and a run past its timeout are the generated action's own behaviour. Throttling
(OpenWhisk's 429, which carries no Retry-After) and an internal error are scripted on the
platform's side, as a real namespace produces them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from textwrap import dedent

from providers.base import FaasConfig, FaasDeployment
from providers.digitalocean import DEFAULT_NAMESPACE_LABEL, DigitalOceanExecutor
from providers.packaging import build_digitalocean_package
from tests.providers._digitalocean_fake import FakeDigitalOcean, Script
from tests.providers.contract._driver import Behaviour, ContractDriver

#: What a 429 without rate-limit headers carries: the executor's fallback wait.
THROTTLE_RETRY_AFTER_S = 1.5

_HANDLERS = dedent(
    """
    import threading


    def reverse(payload):
        return payload[::-1]


    def fail(payload):
        raise RuntimeError("the contract function failed on purpose")


    def overrun(payload):
        threading.Event().wait(120)
        return payload
    """
)
_HANDLER_OF = {
    Behaviour.SUCCEED: "reverse",
    Behaviour.FAIL: "fail",
    Behaviour.THROTTLE: "reverse",
    Behaviour.SERVER_ERROR: "reverse",
    Behaviour.TIME_OUT: "overrun",
}
_SCRIPT_OF = {Behaviour.THROTTLE: Script.THROTTLE, Behaviour.SERVER_ERROR: Script.INTERNAL_ERROR}


class DigitalOceanDriver(ContractDriver):
    """Drives :class:`~providers.digitalocean.DigitalOceanExecutor` against the fake."""

    executor: DigitalOceanExecutor
    reported_metrics = frozenset({"execution_ms", "cold_start"})
    throttle_retry_after_s = THROTTLE_RETRY_AFTER_S

    def __init__(self, fake: FakeDigitalOcean, work_dir: Path, *, env_secret: str) -> None:
        self._fake = fake
        self._env_secret = env_secret
        source = work_dir / "contract_handlers.py"
        source.write_text(_HANDLERS)
        self._packages = {
            name: build_digitalocean_package(f"contract_handlers:{name}", sources=[source])
            for name in set(_HANDLER_OF.values())
        }
        # Made beforehand, so its key is known as a secret; the executor finds it by label.
        namespace = fake.add_namespace(DEFAULT_NAMESPACE_LABEL, "ams3")
        self.executor = DigitalOceanExecutor(
            fake.token,
            "ams3",
            api_base_url=fake.url,
            throttle_retry_after_s=THROTTLE_RETRY_AFTER_S,
        )
        self.secrets = (fake.token, namespace["key"], env_secret)

    @contextlib.contextmanager
    def function(self, job_id: int, behaviour: Behaviour) -> Iterator[FaasDeployment]:
        config = FaasConfig(
            memory_mb=256,
            timeout_secs=1 if behaviour is Behaviour.TIME_OUT else 60,
            env_vars={"CONTRACT_SECRET": self._env_secret},
        )
        package = self._packages[_HANDLER_OF[behaviour]]
        deployment = self.executor.deploy_job(job_id, package, config)
        script = _SCRIPT_OF.get(behaviour)
        with contextlib.ExitStack() as held:
            if script is not None:
                held.enter_context(self._fake.scripted(self.executor.function_id(job_id), script))
            yield deployment

    def invocations_seen(self, job_id: int) -> int:
        return self._fake.invocations_of(self.executor.function_id(job_id))
