"""Operating a FaaS job's function: deploy, warm, health, info and undeploy.

Each operation finds the job's executor in the app's registry (the provider is the one the
app registered; naming another is an error, never a silent switch) and calls it. Deploying
builds the package from a Python handler ``module:function`` with the package builder the
executor's provider declares (:mod:`providers.registry`).

These are what ``blueprint-faas deploy|warm|health|info|undeploy`` run; the CLI only parses
and prints.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from dispatcher.errors import NotAFaasJob, ProviderMismatch, UnknownJob
from providers.base import DEFAULT_CONFIG, FaasConfig, FaasDeployment
from providers.errors import InvalidConfig
from providers.registry import MissingExtra, UnknownProvider, provider_spec

if TYPE_CHECKING:
    from dispatcher.app import Blueprint
    from providers.base import FaasExecutor

__all__ = [
    "build_package",
    "deploy",
    "deployment_to_dict",
    "executor_for",
    "faas_config",
    "health",
    "info",
    "parse_env_pairs",
    "undeploy",
    "warm",
]


def build_package(provider: str, handler: str, sources: Sequence[str | Path]) -> bytes:
    """The deployment zip of ``handler`` for ``provider``'s runtime.

    Raises
    ------
    InvalidConfig
        ``provider`` is not a provider this installation has (or its module cannot load),
        or its builder refuses the handler or the sources (bad ``module:function``, a
        missing file).
    """
    try:
        spec = provider_spec(provider)
    except (UnknownProvider, MissingExtra) as error:
        raise InvalidConfig(f"cannot package for it: {error}", provider=provider) from None
    return spec.build_package(handler, sources=[Path(source) for source in sources])


def executor_for(blueprint: Blueprint, job_id: int, provider: str | None = None) -> FaasExecutor:
    """The executor the app registered for ``job_id``.

    Parameters
    ----------
    provider:
        When given, a check: it must be the executor's ``provider_name``.

    Raises
    ------
    UnknownJob
        The app defines no job ``job_id``.
    NotAFaasJob
        ``job_id`` is a local job.
    ProviderMismatch
        ``provider`` is not the registered executor's provider.
    """
    if job_id not in blueprint.registry:
        if blueprint.knows(job_id):
            raise NotAFaasJob(job_id)
        raise UnknownJob(job_id)
    executor = blueprint.registry.get(job_id)
    if provider is not None and provider != executor.provider_name:
        raise ProviderMismatch(job_id, executor.provider_name, provider)
    return executor


def deploy(
    blueprint: Blueprint,
    job_id: int,
    handler: str,
    *,
    sources: Sequence[str | Path] = (),
    config: FaasConfig | None = None,
    provider: str | None = None,
) -> FaasDeployment:
    """Package ``handler`` for the job's provider and deploy it (create or replace).

    Parameters
    ----------
    handler:
        ``module:function``, bytes in and bytes out.
    sources:
        Files and folders shipped in the package; the handler's module must be among them.
    config:
        Memory, timeout, environment, concurrency and keep-warm of the function; None
        deploys the config the app gives the job (its settings file's ``[faas.jobs.<id>]``
        fields, or ``configure_job``), so the function runs with the timeout the workers
        size their deadlines by.

    Raises
    ------
    UnknownJob, NotAFaasJob, ProviderMismatch
        As :func:`executor_for`.
    FaasError
        Packaging (InvalidConfig) or control-plane failures.
    """
    executor = executor_for(blueprint, job_id, provider)
    package = build_package(executor.provider_name, handler, sources)
    return executor.deploy_job(
        job_id, package, executor.job_config(job_id) if config is None else config
    )


def warm(
    blueprint: Blueprint, job_id: int, instances: int = 1, *, provider: str | None = None
) -> int:
    """Start ``instances`` instances of the job's function; return how many are warm.

    Raises
    ------
    UnknownJob, NotAFaasJob, ProviderMismatch, FaasError
        As :func:`deploy`; NotDeployed when the function is not there.
    """
    return executor_for(blueprint, job_id, provider).warm(job_id, instances)


def health(blueprint: Blueprint, job_id: int, *, provider: str | None = None) -> bool:
    """True when the job's function is deployed and able to run.

    Raises
    ------
    UnknownJob, NotAFaasJob, ProviderMismatch, FaasError
        As :func:`deploy`; a failure to ask (transport, auth) raises rather than answering.
    """
    return executor_for(blueprint, job_id, provider).health_check(job_id)


def info(blueprint: Blueprint, job_id: int, *, provider: str | None = None) -> FaasDeployment:
    """What the provider reports about the job's function.

    Raises
    ------
    UnknownJob, NotAFaasJob, ProviderMismatch, FaasError
        As :func:`deploy`; NotDeployed when there is no function.
    """
    return executor_for(blueprint, job_id, provider).get_deployment(job_id)


def undeploy(blueprint: Blueprint, job_id: int, *, provider: str | None = None) -> None:
    """Remove the job's function (removing one that is not there is not an error).

    Raises
    ------
    UnknownJob, NotAFaasJob, ProviderMismatch, FaasError
        As :func:`deploy`.
    """
    executor_for(blueprint, job_id, provider).undeploy_job(job_id)


def deployment_to_dict(deployment: FaasDeployment) -> dict[str, Any]:
    """A deployment as JSON-ready values (the date in ISO 8601)."""
    values: dict[str, Any] = asdict(deployment)
    if deployment.deployed_at is not None:
        values["deployed_at"] = deployment.deployed_at.isoformat()
    return values


def parse_env_pairs(pairs: Sequence[str]) -> dict[str, str]:
    """``["K=V", ...]`` as a dict; the values may be secrets and are never echoed.

    Raises
    ------
    InvalidConfig
        A pair without ``=`` or with an empty name.
    """
    env: dict[str, str] = {}
    for index, pair in enumerate(pairs, 1):
        name, sep, value = pair.partition("=")
        if not sep or not name:
            # Not echoed: a pair missing its name or its "=" may be a bare secret.
            raise InvalidConfig(f"environment entry {index} is not NAME=VALUE")
        env[name] = value
    return env


def faas_config(
    base: FaasConfig = DEFAULT_CONFIG,
    *,
    memory_mb: int | None = None,
    timeout_s: int | None = None,
    env_vars: Mapping[str, str] | None = None,
    keep_warm: bool | None = None,
    max_concurrency: int | None = None,
) -> FaasConfig:
    """``base`` (the job's config in the app) with the deploy options that were given.

    A None keeps ``base``'s value, so a deploy from the command line runs the function with
    the config the workers size their deadlines by unless told otherwise; ``env_vars`` are
    added over ``base``'s.

    Raises
    ------
    InvalidConfig
        A value out of range or an environment variable name that is not portable. The
        message names the field and the rule, never a value (values may be secrets).
    """
    values: dict[str, Any] = dict(base)
    values["env_vars"] = {**base.env_vars, **(env_vars or {})}
    given = {
        "memory_mb": memory_mb,
        "timeout_secs": timeout_s,
        "keep_warm": keep_warm,
        "max_concurrency": max_concurrency,
    }
    values.update({name: value for name, value in given.items() if value is not None})
    try:
        return FaasConfig(**values)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc'])}: {problem['msg']}"
            for problem in error.errors(include_input=False, include_url=False)
        )
        raise InvalidConfig(f"invalid function config: {problems}") from None
