"""The app definition: one object that the runner and every worker import.

Following Celery's ``-A module`` convention, a module builds a :class:`Blueprint` (its local
handlers, its FaaS registry, optionally its producer and consumers) at import time, and
``--app module`` or ``--app module:attr`` finds it. Building it must do no network I/O:
workers on other hosts import the same module, with their own environment and credentials.

An app module looks like::

    from dispatcher import Blueprint, Router
    from providers.custom import HttpFaasExecutor

    router = Router()

    @router.job(0)
    def square(args: bytes) -> bytes: ...

    app = Blueprint(router=router)
    app.with_faas_executor(1, HttpFaasExecutor(os.environ["MY_FAAS_URL"]))
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Self

from dispatcher.errors import ConfigError
from dispatcher.registry import FaasRegistry
from dispatcher.router import Router
from dispatcher.settings import Settings

if TYPE_CHECKING:
    from dispatcher.runner import Consumer, Producer
    from providers.base import FaasExecutor

__all__ = ["DEFAULT_APP_ATTRS", "Blueprint", "load_app"]

#: Attributes ``load_app`` tries, in order, when the spec names only a module.
DEFAULT_APP_ATTRS = ("app", "blueprint")


class Blueprint:
    """A blueprint's jobs and how to reach them.

    Parameters
    ----------
    router:
        Local handlers.
    registry:
        Job ids that run on a FaaS provider, and their executors.
    settings:
        Broker, backend and reliability knobs; read from the environment on first use when
        None (so importing the module never fails on a missing variable).
    producer:
        What ``blueprint-faas run`` submits: an iterable or async iterable of JobCalls, or a
        zero-argument callable returning one (preferred: a generator can be consumed once).
    consumers:
        What ``blueprint-faas run`` hands every JobResult to.
    """

    def __init__(
        self,
        router: Router | None = None,
        registry: FaasRegistry | None = None,
        settings: Settings | None = None,
        *,
        producer: Producer | Callable[[], Producer] | None = None,
        consumers: Iterable[Consumer] = (),
    ) -> None:
        self.router = Router() if router is None else router
        self.registry = FaasRegistry() if registry is None else registry
        self._settings = settings
        self.producer = producer
        self.consumers = list(consumers)

    @property
    def settings(self) -> Settings:
        """The explicit settings, else ``Settings.from_env()`` read once.

        Raises
        ------
        ConfigError
            The environment or config file holds an unknown key or a bad value.
        """
        if self._settings is None:
            self._settings = Settings.from_env()
        return self._settings

    def with_settings(self, settings: Settings) -> Self:
        """Use ``settings`` instead of the environment's."""
        self._settings = settings
        return self

    def with_faas_executor(self, job_id: int, executor: FaasExecutor) -> Self:
        """Run ``job_id`` on ``executor`` instead of a local handler."""
        self.registry.register(job_id, executor)
        return self

    def job_ids(self) -> list[int]:
        """Every job id this blueprint can run, locally or on a provider, sorted."""
        return sorted(set(self.router.job_ids()) | set(self.registry.job_ids()))

    def knows(self, job_id: int) -> bool:
        """True when ``job_id`` has a local handler or a FaaS executor."""
        return job_id in self.registry or job_id in self.router

    def accepts(self, job_id: int) -> bool:
        """True when a call of ``job_id`` should be published.

        A blueprint that defines no job at all (a runner that only forwards to workers
        importing another app) accepts every job id; any other accepts the ones it knows.
        """
        return (not self.router and not self.registry) or self.knows(job_id)

    def __repr__(self) -> str:
        return (
            f"Blueprint(local_jobs={self.router.job_ids()}, "
            f"faas_jobs={self.registry.job_ids()}, settings={self._settings!r})"
        )


def load_app(spec: str) -> Blueprint:
    """Import the Blueprint named by ``spec``: ``"package.module"`` or ``"package.module:attr"``.

    With no attribute, the module's ``app`` or else ``blueprint`` is used. An attribute that
    is a zero-argument callable (a factory) is called.

    Raises
    ------
    ConfigError
        The module cannot be imported, or the attribute is missing or not a Blueprint.
    """
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ConfigError(f"cannot import app module {module_name!r}: {error}") from error
    candidates = (attr,) if attr else DEFAULT_APP_ATTRS
    for name in candidates:
        value: Any = getattr(module, name, None)
        if value is None:
            continue
        if not isinstance(value, Blueprint) and callable(value):
            value = value()
        if isinstance(value, Blueprint):
            return value
        raise ConfigError(f"{module_name}:{name} is a {type(value).__name__}, not a Blueprint")
    raise ConfigError(f"module {module_name!r} has no {' or '.join(candidates)} Blueprint")
