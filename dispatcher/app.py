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

Or a settings file alone defines the app (``--app blueprint.toml``, :meth:`Blueprint.from_config`):
its ``[local]`` table names the module of the local jobs' Router and its ``[faas]`` table the
FaaS jobs and their providers (:mod:`dispatcher.app_config`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from dispatcher.errors import ConfigError
from dispatcher.jobs import checked_job_id
from dispatcher.placement import Placement, placement_problems
from dispatcher.registry import FaasRegistry
from dispatcher.router import Router
from dispatcher.settings import (
    CONFIG_ENV_VAR,
    Settings,
    config_file_path,
    read_config_file,
)

if TYPE_CHECKING:
    from dispatcher.runner import Consumer, Producer
    from providers.base import FaasExecutor

__all__ = ["APP_FILE_SUFFIXES", "DEFAULT_APP_ATTRS", "Blueprint", "load_app"]

#: Attributes ``load_app`` tries, in order, when the spec names only a module.
DEFAULT_APP_ATTRS = ("app", "blueprint")
#: A ``load_app`` spec ending so is a settings file that defines the app, not a module.
APP_FILE_SUFFIXES = (".toml", ".json")


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
    placements:
        Job id -> placement policy (:class:`~dispatcher.placement.Placement` or its name). A
        job not named runs on its executor if it has one, else on its local handler.
    """

    def __init__(
        self,
        router: Router | None = None,
        registry: FaasRegistry | None = None,
        settings: Settings | None = None,
        *,
        producer: Producer | Callable[[], Producer] | None = None,
        consumers: Iterable[Consumer] = (),
        placements: Mapping[int, Placement | str] | None = None,
    ) -> None:
        self.router = Router() if router is None else router
        self.registry = FaasRegistry() if registry is None else registry
        self._settings = settings
        self.producer = producer
        self.consumers = list(consumers)
        self._placements: dict[int, Placement] = {}
        for job_id, placement in (placements or {}).items():
            self.with_placement(job_id, placement)

    @classmethod
    def from_config(
        cls,
        path: str | Path | None = None,
        *,
        router: Router | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Self:
        """The app a settings file declares: knobs, local jobs and FaaS jobs in one file.

        Parameters
        ----------
        path:
            The TOML or JSON settings file; the one ``BLUEPRINT_FAAS_CONFIG`` names when None.
        router:
            The local jobs, for an app module that keeps its handlers in Python and its
            FaaS jobs in the file; the file's ``[local]`` table must then be absent.
        environ:
            Where ``BLUEPRINT_FAAS_*`` knobs (and the file's name) are read, ``os.environ``
            when None. ``env:NAME`` secrets always come from the process's environment.

        Raises
        ------
        ConfigError
            No file, or one that cannot be read; a bad knob, ``[local]`` or ``[faas]`` entry
            (each named by its key); local jobs defined twice; a job both local and FaaS
            without a placement that uses both; a placement without what it runs on.
        """
        from dispatcher.app_config import (
            LOCAL_SECTION,
            faas_placements,
            faas_registry,
            local_router,
        )

        config_path = Path(path) if path is not None else config_file_path(environ)
        if config_path is None:
            raise ConfigError(f"no settings file: give its path or set {CONFIG_ENV_VAR}")
        data = read_config_file(config_path)
        settings = Settings.from_env(environ, config_file=config_path)
        try:
            if LOCAL_SECTION in data:
                if router is not None:
                    raise ConfigError(
                        f"local jobs are given twice: by its [{LOCAL_SECTION}] table and in code"
                    )
                router = local_router(data[LOCAL_SECTION])
            registry = faas_registry(data.get("faas", {}))
            placements = faas_placements(data.get("faas", {}))
        except ConfigError as error:
            raise ConfigError(f"{config_path}: {error}") from error.__cause__
        router = Router() if router is None else router
        both = sorted(
            job_id
            for job_id in set(router.job_ids()) & set(registry.job_ids())
            if job_id not in placements or placements[job_id].spare is None
        )
        if both:
            raise ConfigError(
                f"{config_path}: job(s) {both} are both local and FaaS jobs; a job with both "
                f"needs placement = {str(Placement.LOCAL_WITH_FAAS_OVERFLOW)!r} or "
                f"{str(Placement.FAAS_WITH_LOCAL_FALLBACK)!r}"
            )
        blueprint = cls(router=router, registry=registry, settings=settings, placements=placements)
        try:
            blueprint.check_placements()
        except ConfigError as error:
            raise ConfigError(f"{config_path}: {error}") from None
        return blueprint

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

    def with_placement(self, job_id: int, placement: Placement | str) -> Self:
        """Place ``job_id``'s calls by ``placement`` (checked by :meth:`check_placements`).

        Raises
        ------
        ConfigError
            ``placement`` is not a placement policy's name.
        """
        try:
            self._placements[checked_job_id(job_id)] = Placement(placement)
        except ValueError:
            known = ", ".join(str(policy) for policy in Placement)
            raise ConfigError(
                f"job {job_id}: unknown placement {placement!r} (known: {known})"
            ) from None
        return self

    def placement(self, job_id: int) -> Placement:
        """``job_id``'s placement: the one given, else ``faas`` with an executor, else ``local``."""
        placement = self._placements.get(job_id)
        if placement is not None:
            return placement
        return Placement.FAAS if job_id in self.registry else Placement.LOCAL

    def check_placements(self) -> None:
        """Refuse a placement without what it runs on.

        Raises
        ------
        ConfigError
            A job's placement needs a local handler or an executor it does not have (the
            overflow and fallback policies need both).
        """
        problems = placement_problems(
            self._placements, self.router.job_ids(), self.registry.job_ids()
        )
        if problems:
            raise ConfigError("; ".join(problems))

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
        placements = {job_id: str(p) for job_id, p in sorted(self._placements.items())}
        return (
            f"Blueprint(local_jobs={self.router.job_ids()}, "
            f"faas_jobs={self.registry.job_ids()}, placements={placements}, "
            f"settings={self._settings!r})"
        )


def load_app(spec: str) -> Blueprint:
    """The Blueprint named by ``spec``: ``"package.module"``, ``"package.module:attr"``, or a
    settings file ``"path/app.toml"`` (or ``.json``) that defines the app by itself.

    With no attribute, the module's ``app`` or else ``blueprint`` is used. An attribute that
    is a zero-argument callable (a factory) is called. A settings file is read by
    :meth:`Blueprint.from_config`, and is also the app's settings file (in place of
    ``BLUEPRINT_FAAS_CONFIG``).

    Raises
    ------
    ConfigError
        The module cannot be imported, or the attribute is missing or not a Blueprint; or
        the settings file is unreadable or wrong (see :meth:`Blueprint.from_config`).
    """
    if spec.endswith(APP_FILE_SUFFIXES):
        return Blueprint.from_config(spec)
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
            value.check_placements()
            return value
        raise ConfigError(f"{module_name}:{name} is a {type(value).__name__}, not a Blueprint")
    raise ConfigError(f"module {module_name!r} has no {' or '.join(candidates)} Blueprint")
