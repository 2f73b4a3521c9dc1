"""An app declared in the settings file: its local jobs' module and its FaaS jobs.

Besides the knobs of :class:`~dispatcher.settings.Settings`, the settings file may hold two
tables that define the app itself, so that an operator wires providers without Python (the
original crate's ``FaasProviderConfig`` and ``factory::create_executor``)::

    [local]
    module = "mymod"            # its `router` (a dispatcher.Router); "mymod:attr" for another

    [faas.options.custom]       # options every `custom` job below starts from
    base_url = "http://127.0.0.1:8080"
    auth_header = { name = "Authorization", value = "env:MY_FAAS_KEY" }

    [faas.jobs.1]
    provider = "custom"
    memory_mb = 256             # the job's FaasConfig fields
    timeout_secs = 60
    keep_warm = true
    placement = "faas_with_local_fallback"  # or local_with_faas_overflow (and a local handler)
    [faas.jobs.1.options]       # this job's own options, over the provider's shared ones
    function_prefix = "acme"

Jobs whose provider and options are equal share one executor. Every problem (an unknown
provider, key or field, a bad value, a config over the provider's limits, an unset ``env:``
variable) is a :class:`~dispatcher.errors.ConfigError` naming the key; values are never
quoted, since options hold secrets.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ValidationError

from dispatcher.errors import ConfigError
from dispatcher.placement import Placement
from dispatcher.registry import FaasRegistry
from dispatcher.router import Router
from providers.base import MAX_JOB_ID, FaasConfig
from providers.registry import MissingExtra, UnknownProvider, provider_spec

if TYPE_CHECKING:
    from providers.base import FaasExecutor
    from providers.options import ProviderOptions

__all__ = [
    "APP_SECTIONS",
    "DEFAULT_ROUTER_ATTR",
    "FAAS_SECTION",
    "LOCAL_SECTION",
    "faas_placements",
    "faas_registry",
    "local_router",
]

#: The settings file's table of the app's local jobs.
LOCAL_SECTION = "local"
#: The settings file's table of the app's FaaS jobs.
FAAS_SECTION = "faas"
#: The tables of the settings file that define the app rather than set knobs.
APP_SECTIONS = (LOCAL_SECTION, FAAS_SECTION)
#: The attribute of ``[local] module`` that holds the Router, unless ``module:attr`` says.
DEFAULT_ROUTER_ATTR = "router"

_Model = TypeVar("_Model", bound=BaseModel)
_UNKNOWN_KEY = "unknown key"
_JOB_KEYS = frozenset({"provider", "options", "placement"})
_FAAS_KEYS = frozenset({"jobs", "options"})
_LOCAL_KEYS = frozenset({"module"})


@dataclass(frozen=True, slots=True)
class _FaasJob:
    job_id: int
    provider: str
    options: ProviderOptions
    config: FaasConfig


def local_router(local: object) -> Router:
    """The Router named by the ``[local]`` table: ``module = "mod"`` or ``"mod:attr"``.

    Raises
    ------
    ConfigError
        The table has another key, the module cannot be imported, or the attribute is not
        a :class:`~dispatcher.router.Router`.
    """
    table = _table(local, LOCAL_SECTION)
    _refuse_unknown(table, _LOCAL_KEYS, LOCAL_SECTION)
    spec = table.get("module")
    key = f"{LOCAL_SECTION}.module"
    if not isinstance(spec, str) or not spec:
        raise ConfigError(f"{key}: expected a module name, 'module' or 'module:attr'")
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ConfigError(f"{key}: cannot import {module_name!r}: {error}") from error
    router = getattr(module, attr or DEFAULT_ROUTER_ATTR, None)
    if not isinstance(router, Router):
        raise ConfigError(
            f"{key}: {module_name}:{attr or DEFAULT_ROUTER_ATTR} is "
            f"{'missing' if router is None else type(router).__name__ + ', not a Router'}"
        )
    return router


def faas_registry(faas: object) -> FaasRegistry:
    """The FaaS jobs of the ``[faas]`` table, each on an executor built from its options.

    Every problem is reported at once. Executors do no network I/O when built; secrets
    given as ``env:NAME`` are read now, from this process's environment.

    Raises
    ------
    ConfigError
        Any problem, each named by its key (``faas.jobs.1.options.base_url: ...``).
    """
    jobs, problems = _faas_jobs(_table(faas, FAAS_SECTION))
    registry = FaasRegistry()
    built: list[tuple[str, ProviderOptions, FaasExecutor]] = []
    for job in jobs:
        executor = _shared_executor(built, job)
        # The executor's limits: the provider's, with the options' overrides.
        problems.extend(
            f"{FAAS_SECTION}.jobs.{job.job_id}.{violation.field}: {violation.message} "
            f"({job.provider} limits)"
            for violation in executor.limits.violations(job.config)
        )
        executor.configure_job(job.job_id, job.config)
        registry.register(job.job_id, executor)
    if problems:
        raise ConfigError("; ".join(problems))
    return registry


def faas_placements(faas: object) -> dict[int, Placement]:
    """The ``placement`` of each job of the ``[faas]`` table that names one.

    Raises
    ------
    ConfigError
        A placement that is not a policy's name (the key is named).
    """
    jobs = _table(faas, FAAS_SECTION).get("jobs", {})
    placements: dict[int, Placement] = {}
    problems = []
    for key, table in _table(jobs, f"{FAAS_SECTION}.jobs").items():
        job_id = _job_id(key)
        if job_id is None or not isinstance(table, Mapping) or "placement" not in table:
            continue  # a bad job id or table is faas_registry's to report
        try:
            placements[job_id] = Placement(table["placement"])
        except ValueError:
            known = ", ".join(str(policy) for policy in Placement)
            problems.append(f"{FAAS_SECTION}.jobs.{key}.placement: expected one of {known}")
    if problems:
        raise ConfigError("; ".join(problems))
    return placements


def _shared_executor(
    built: list[tuple[str, ProviderOptions, FaasExecutor]], job: _FaasJob
) -> FaasExecutor:
    for provider, options, executor in built:
        if provider == job.provider and options == job.options:
            return executor
    executor = provider_spec(job.provider).create(job.options)
    built.append((job.provider, job.options, executor))
    return executor


def _faas_jobs(faas: Mapping[str, Any]) -> tuple[list[_FaasJob], list[str]]:
    problems = _unknown_keys(faas, _FAAS_KEYS, FAAS_SECTION)
    shared = _table(faas.get("options", {}), f"{FAAS_SECTION}.options")
    for provider, options in shared.items():
        key = f"{FAAS_SECTION}.options.{provider}"
        problems.extend(_provider_problem(provider, key))
        if not isinstance(options, Mapping):
            problems.append(f"{key}: expected a table")
    jobs: list[_FaasJob] = []
    for key, table in _table(faas.get("jobs", {}), f"{FAAS_SECTION}.jobs").items():
        job, job_problems = _faas_job(key, table, shared)
        problems.extend(job_problems)
        if job is not None:
            jobs.append(job)
    return jobs, problems


def _faas_job(
    key: str, table: object, shared: Mapping[str, Any]
) -> tuple[_FaasJob | None, list[str]]:
    prefix = f"{FAAS_SECTION}.jobs.{key}"
    job_id = _job_id(key)
    if job_id is None:
        return None, [f"{prefix}: not a job id (an integer in [0, {MAX_JOB_ID}])"]
    if not isinstance(table, Mapping):
        return None, [f"{prefix}: expected a table"]
    provider = table.get("provider")
    if not isinstance(provider, str):
        return None, [f"{prefix}.provider: expected a provider name"]
    problems = _provider_problem(provider, f"{prefix}.provider")
    if problems:
        return None, problems
    spec = provider_spec(provider)
    own = table.get("options", {})
    if not isinstance(own, Mapping):
        return None, [f"{prefix}.options: expected a table"]
    provider_shared = shared.get(provider, {})
    if not isinstance(provider_shared, Mapping):
        return None, []  # reported once, under its own key
    # Shared options are reported under the job's key: the job is what they fail for.
    options = _validated(spec.options, {**provider_shared, **own}, f"{prefix}.options", problems)
    fields = {name: value for name, value in table.items() if name not in _JOB_KEYS}
    config = _validated(FaasConfig, fields, prefix, problems)
    if problems or options is None or config is None:
        return None, problems
    return _FaasJob(job_id, provider, options, config), []


def _validated(
    model: type[_Model], values: Mapping[str, Any], prefix: str, problems: list[str]
) -> _Model | None:
    try:
        return model.model_validate(values)
    except ValidationError as error:
        problems.extend(
            f"{'.'.join((prefix, *(str(part) for part in problem['loc'])))}: "
            f"{_problem_text(problem['type'], problem['msg'])}"
            for problem in error.errors(include_input=False, include_url=False)
        )
        return None


def _problem_text(kind: str, message: str) -> str:
    return _UNKNOWN_KEY if kind == "extra_forbidden" else message.removeprefix("Value error, ")


def _provider_problem(provider: str, key: str) -> list[str]:
    try:
        spec = provider_spec(provider)
        spec.check_installed()
    except (UnknownProvider, MissingExtra) as error:
        return [f"{key}: {error}"]
    return []


def _job_id(key: str) -> int | None:
    if not key.isdigit() or not key.isascii():
        return None
    job_id = int(key)
    return job_id if job_id <= MAX_JOB_ID else None


def _table(value: object, key: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key}: expected a table")
    return value


def _unknown_keys(table: Mapping[str, Any], known: frozenset[str], key: str) -> list[str]:
    return [
        f"{key}.{name}: {_UNKNOWN_KEY} (known: {', '.join(sorted(known))})"
        for name in sorted(set(table) - known)
    ]


def _refuse_unknown(table: Mapping[str, Any], known: frozenset[str], key: str) -> None:
    problems = _unknown_keys(table, known, key)
    if problems:
        raise ConfigError("; ".join(problems))
