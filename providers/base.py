"""The executor interface every provider implements, and the value objects it speaks in.

Executors are synchronous on purpose: Celery workers call them from a
thread or greenlet of their pool, which is where I/O concurrency comes from. The public
methods here hold the shared policy (job id and payload checks, timing, logging); a provider
fills in the small ``_``-prefixed primitives.
"""

from __future__ import annotations

import logging
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType, TracebackType
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator

from providers.errors import FaasError, InvalidConfig, PayloadTooLarge
from providers.limits import NO_LIMITS, ProviderLimits, json_request_size

__all__ = [
    "DEFAULT_CONFIG",
    "DEFAULT_MEMORY_MB",
    "DEFAULT_TIMEOUT_SECS",
    "MAX_JOB_ID",
    "FaasConfig",
    "FaasDeployment",
    "FaasExecutor",
    "FaasMetrics",
    "FaasResponse",
    "InvokeReply",
    "check_job_id",
    "function_name",
]

logger = logging.getLogger("blueprint_faas.providers")

MAX_JOB_ID = 2**32 - 1
DEFAULT_MEMORY_MB = 512
DEFAULT_TIMEOUT_SECS = 300
FUNCTION_NAME_PREFIX = "blueprint-job"

_ENV_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_job_id(job_id: object) -> int:
    """Return ``job_id`` if it is a Blueprint job id (an int in ``[0, 2**32)``).

    Raises
    ------
    TypeError
        ``job_id`` is not an int (bools are refused too: ``True`` is not a job id).
    ValueError
        ``job_id`` is outside ``[0, 2**32)``.
    """
    if isinstance(job_id, bool) or not isinstance(job_id, int):
        raise TypeError(f"job_id must be an int, got {type(job_id).__name__}")
    if not 0 <= job_id <= MAX_JOB_ID:
        raise ValueError(f"job_id must be in [0, {MAX_JOB_ID}], got {job_id}")
    return job_id


def function_name(job_id: int, prefix: str = FUNCTION_NAME_PREFIX) -> str:
    """The provider-side name of a job's function: ``blueprint-job-<job_id>``.

    One rule for every provider keeps a deployment findable from its job id alone; the
    prefix lets two blueprints share an account without colliding.
    """
    return f"{prefix}-{check_job_id(job_id)}"


class FaasConfig(BaseModel):
    """How a job's function is deployed and called.

    Every field is honoured by every provider that can honour it; a provider that cannot
    raises :class:`~providers.errors.InvalidConfig` at deploy rather than ignoring it.
    ``env_vars`` and ``provider_config`` may hold secrets, so they stay out of the repr and
    out of validation errors (which would otherwise quote the input).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    memory_mb: int = Field(default=DEFAULT_MEMORY_MB, ge=64, le=32_768)
    timeout_secs: int = Field(default=DEFAULT_TIMEOUT_SECS, ge=1, le=3_600)
    env_vars: Mapping[str, str] = Field(default_factory=dict, repr=False)
    max_concurrency: int | None = Field(default=None, ge=1)
    keep_warm: bool = False
    provider_config: Mapping[str, Any] = Field(default_factory=dict, repr=False)

    @field_validator("env_vars")
    @classmethod
    def _env_var_names_are_portable(cls, value: Mapping[str, str]) -> Mapping[str, str]:
        for name in value:
            if not _ENV_VAR_NAME.match(name):
                raise ValueError(f"invalid environment variable name {name!r}")
        return MappingProxyType(dict(value))

    @field_validator("provider_config")
    @classmethod
    def _freeze_provider_config(cls, value: Mapping[str, Any]) -> Mapping[str, Any]:
        return MappingProxyType(dict(value))


DEFAULT_CONFIG = FaasConfig()


@dataclass(frozen=True, slots=True)
class FaasDeployment:
    """What a provider reports about a deployed function."""

    function_id: str
    job_id: int
    provider: str
    endpoint: str | None
    memory_mb: int
    timeout_secs: int
    status: str = "deployed"
    deployed_at: datetime | None = None
    package_size_bytes: int | None = None
    cold_start_ms: float | None = None


@dataclass(frozen=True, slots=True)
class FaasMetrics:
    """Timing and resource figures of one invocation.

    ``total_ms`` is measured by us around the whole call; the rest is what the provider
    reported, or ``None`` when it reports nothing (never a made-up figure).
    """

    total_ms: float
    execution_ms: float | None = None
    cold_start: bool | None = None
    memory_used_mb: float | None = None
    billed_ms: float | None = None


@dataclass(frozen=True, slots=True)
class FaasResponse:
    """A successful invocation: the function's output bytes and its metrics."""

    body: bytes
    metrics: FaasMetrics


@dataclass(frozen=True, slots=True)
class InvokeReply:
    """What a provider's ``_invoke`` primitive returns; the base adds the total time."""

    body: bytes
    execution_ms: float | None = None
    cold_start: bool | None = None
    memory_used_mb: float | None = None
    billed_ms: float | None = None


class FaasExecutor(ABC):
    """Deploys, invokes, checks, warms and removes the functions of Blueprint jobs.

    Constructors of subclasses do no network I/O; clients are created lazily, once per
    process, and released by :meth:`close`. Every method raises only
    :class:`~providers.errors.FaasError` subclasses for provider failures.

    Parameters
    ----------
    limits:
        What the provider accepts, checked before every deploy and invoke; the class's
        :attr:`default_limits` when None.
    """

    provider_name: ClassVar[str]
    #: The provider's documented limits (:mod:`providers.limits`), unless an instance is
    #: given its own.
    default_limits: ClassVar[ProviderLimits] = NO_LIMITS

    def __init__(self, *, limits: ProviderLimits | None = None) -> None:
        self._job_configs: dict[int, FaasConfig] = {}
        self._limits = type(self).default_limits if limits is None else limits

    @property
    def limits(self) -> ProviderLimits:
        """The limits this executor checks deploys and invokes against."""
        return self._limits

    @property
    def region(self) -> str | None:
        """Where this executor's functions run, as its provider names regions.

        Invocations are priced with it (:mod:`providers.pricing`); None, for a platform with
        no regions, prices them with the provider's default region.
        """
        return None

    @property
    def scope(self) -> str:
        """What one circuit breaker and one concurrency budget cover, shared by every host.

        The provider and region by default; an executor with an endpoint of its own (a
        custom platform's URL, a namespace) names it, so two accounts never share a breaker.
        Never holds a secret: it is a Redis key and a metrics label.
        """
        return f"{self.provider_name}:{self.region or 'default'}"

    # -- configuration ------------------------------------------------------------------

    def configure_job(self, job_id: int, config: FaasConfig) -> Self:
        """Record the config a job's function runs with, without deploying it.

        Workers that did not deploy the function still need its timeout to size their own
        deadlines; ``deploy_job`` records the config too.
        """
        self._job_configs[check_job_id(job_id)] = config
        return self

    def job_config(self, job_id: int) -> FaasConfig:
        """The config recorded for ``job_id``, or :data:`DEFAULT_CONFIG`."""
        return self._job_configs.get(job_id, DEFAULT_CONFIG)

    # -- the interface ----------------------------------------------------------------

    def invoke(self, job_id: int, payload: bytes) -> bytes:
        """Run the job's function on ``payload`` and return its output bytes."""
        return self.invoke_with_metrics(job_id, payload).body

    def invoke_with_metrics(self, job_id: int, payload: bytes) -> FaasResponse:
        """Run the job's function and report how long it took and what it cost.

        Raises
        ------
        PayloadTooLarge
            The request ``payload`` makes is over the provider's ``max_request_bytes``;
            nothing was sent.
        FaasError
            Any provider failure, typed by what the caller should do next.
        """
        check_job_id(job_id)
        if not isinstance(payload, bytes | bytearray | memoryview):
            raise TypeError(f"payload must be bytes, got {type(payload).__name__}")
        payload = bytes(payload)
        self._check_request_size(job_id, payload)
        started = time.perf_counter()
        try:
            reply = self._invoke(job_id, payload)
        except FaasError as error:
            logger.warning(
                "invoke failed provider=%s job_id=%s kind=%s retryable=%s status=%s",
                self.provider_name,
                job_id,
                error.kind,
                error.retryable,
                error.status,
            )
            raise
        total_ms = (time.perf_counter() - started) * 1000
        logger.debug(
            "invoked provider=%s job_id=%s in_bytes=%d out_bytes=%d total_ms=%.1f cold=%s",
            self.provider_name,
            job_id,
            len(payload),
            len(reply.body),
            total_ms,
            reply.cold_start,
        )
        metrics = FaasMetrics(
            total_ms=total_ms,
            execution_ms=reply.execution_ms,
            cold_start=reply.cold_start,
            memory_used_mb=reply.memory_used_mb,
            billed_ms=reply.billed_ms,
        )
        return FaasResponse(body=reply.body, metrics=metrics)

    def deploy_job(
        self, job_id: int, package: bytes, config: FaasConfig = DEFAULT_CONFIG
    ) -> FaasDeployment:
        """Create or replace the job's function from a provider-ready zip ``package``.

        Build ``package`` with :mod:`providers.packaging` for the provider's runtime.

        Raises
        ------
        InvalidConfig
            The package is empty or over the provider's size limit, or ``config`` breaks one
            of the provider's :attr:`limits` (the message names the field, the value and the
            limit); nothing was sent.
        FaasError
            Any control-plane failure.
        """
        check_job_id(job_id)
        if not package:
            raise InvalidConfig("the deployment package is empty", provider=self.provider_name)
        self._check_config(config, len(package))
        deployment = self._deploy_job(job_id, bytes(package), config)
        self._job_configs[job_id] = config
        logger.info(
            "deployed provider=%s job_id=%s function=%s memory_mb=%s timeout_secs=%s",
            self.provider_name,
            job_id,
            deployment.function_id,
            config.memory_mb,
            config.timeout_secs,
        )
        return deployment

    def health_check(self, job_id: int) -> bool:
        """True when the job's function is deployed and able to run.

        A function that is missing or unhealthy answers False; a failure to ask (transport,
        auth) raises, since it says nothing about the function.
        """
        return self._health_check(check_job_id(job_id))

    def warm(self, job_id: int, instances: int = 1) -> int:
        """Start ``instances`` instances ahead of time; return how many are now warm."""
        if instances < 1:
            raise ValueError(f"instances must be at least 1, got {instances}")
        return self._warm(check_job_id(job_id), instances)

    def get_deployment(self, job_id: int) -> FaasDeployment:
        """Describe the job's function; raises NotDeployed when there is none."""
        return self._get_deployment(check_job_id(job_id))

    def undeploy_job(self, job_id: int) -> None:
        """Remove the job's function; removing a function that is not there is not an error."""
        self._undeploy_job(check_job_id(job_id))
        self._job_configs.pop(job_id, None)
        logger.info("undeployed provider=%s job_id=%s", self.provider_name, job_id)

    def close(self) -> None:
        """Release pooled connections; the executor may be used again afterwards."""
        return None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- what a provider implements ---------------------------------------------------

    @abstractmethod
    def _invoke(self, job_id: int, payload: bytes) -> InvokeReply: ...

    @abstractmethod
    def _deploy_job(self, job_id: int, package: bytes, config: FaasConfig) -> FaasDeployment: ...

    @abstractmethod
    def _health_check(self, job_id: int) -> bool: ...

    @abstractmethod
    def _warm(self, job_id: int, instances: int) -> int: ...

    @abstractmethod
    def _get_deployment(self, job_id: int) -> FaasDeployment: ...

    @abstractmethod
    def _undeploy_job(self, job_id: int) -> None: ...

    # -- shared policy ----------------------------------------------------------------

    def _request_size(self, job_id: int, payload: bytes) -> int:
        """Bytes of the request the provider receives for ``payload``.

        By default the JSON request every generated entry point speaks; a provider that
        encodes the payload otherwise overrides this.
        """
        return json_request_size(job_id, payload)

    def _check_request_size(self, job_id: int, payload: bytes) -> None:
        cap = self._limits.max_request_bytes
        if cap is None:
            return
        size = self._request_size(job_id, payload)
        if size > cap:
            raise PayloadTooLarge(
                f"a payload of {len(payload)} bytes makes a request of {size} bytes, over "
                f"the {self.provider_name} limit of {cap} bytes (max_request_bytes)",
                provider=self.provider_name,
            )

    def _check_config(self, config: FaasConfig, package_size_bytes: int) -> None:
        violations = self._limits.violations(config)
        too_large = self._limits.package_violation(package_size_bytes)
        if too_large is not None:
            violations.insert(0, too_large)
        if violations:
            problems = "; ".join(violation.message for violation in violations)
            raise InvalidConfig(
                f"{problems} ({self.provider_name} limits)", provider=self.provider_name
            )
