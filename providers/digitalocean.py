"""The executor for DigitalOcean Functions: a namespace found by label, OpenWhisk actions in it.

DigitalOcean's v2 API (``https://api.digitalocean.com``, a bearer token) only manages
namespaces; code is deployed and invoked through the OpenWhisk REST API at the namespace's
``api_host`` with Basic ``uuid:key`` (:mod:`providers._openwhisk`). The namespace is looked up
lazily, in the executor's region, by its label, and created when missing; the constructor does
no network I/O. Packages come from :func:`providers.packaging.build_digitalocean_package`.

Each worker process keeps the namespace's quotas (600 invocations a minute, 120 at once)
client-side with one shared :class:`~providers._rate_limit.InvocationLimiter`, so its threads do
not drive the namespace into 429s.

The provider ``digitalocean`` (:data:`PROVIDER`): built from :class:`DigitalOceanOptions` by a
settings file, or constructed in code.
"""

from __future__ import annotations

import base64
import os
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, ClassVar, Self

import httpx
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainValidator
from pydantic_core import to_json

from providers._auth import HeaderAuth
from providers._do_namespaces import Namespace, find_or_create_namespace
from providers._durations import to_seconds
from providers._http import truncate_message
from providers._openwhisk import (
    Action,
    Activation,
    OpenWhiskClient,
    error_message_of,
)
from providers._poll import PollPolicy, poll_until
from providers._pool import DEFAULT_CONNECT_TIMEOUT_S, DEFAULT_LIMITS, HttpSettings, PooledClient
from providers._rate_limit import InvocationLimiter, shared_limiter
from providers._replies import OptionalText, validate_reply
from providers.base import (
    FUNCTION_NAME_PREFIX,
    FaasConfig,
    FaasDeployment,
    FaasExecutor,
    InvokeReply,
    function_name,
)
from providers.errors import (
    FaasError,
    FaasTimeout,
    FunctionError,
    InvalidConfig,
    NotDeployed,
    PermanentInfrastructureError,
    SerializationError,
    TransientInfrastructureError,
)
from providers.limits import ProviderLimits, limits_over
from providers.options import ProviderOptions, Secret
from providers.packaging import WARMUP_REQUEST, build_digitalocean_package
from providers.packaging.digitalocean import ACTION_MAIN, ENV_PARAMETER
from providers.registry import ProviderSpec

__all__ = [
    "DEFAULT_API_BASE_URL",
    "DEFAULT_NAMESPACE_LABEL",
    "DEFAULT_RUNTIME",
    "DEFAULT_THROTTLE_RETRY_AFTER_S",
    "LIMITS",
    "NAMESPACE_MAX_IN_FLIGHT",
    "NAMESPACE_RATE_PER_MINUTE",
    "PROVIDER",
    "TOKEN_ENV",
    "DigitalOceanExecutor",
    "DigitalOceanOptions",
]

DEFAULT_API_BASE_URL = "https://api.digitalocean.com"
DEFAULT_NAMESPACE_LABEL = "blueprint-functions"
DEFAULT_RUNTIME = "python:3.11"
#: Where the API token is read from when none is given.
TOKEN_ENV = "DIGITALOCEAN_TOKEN"
DEFAULT_CONTROL_TIMEOUT_S = 30.0
# The body carries the zip base64-encoded, up to 64 MB for a 48 MB action.
DEFAULT_DEPLOY_TIMEOUT_S = 120.0
# Added to the job's timeout_secs: the platform's own timeout answer arrives before ours fires.
DEFAULT_INVOKE_MARGIN_S = 10.0
#: The wait a 429 asks for when it carries no rate-limit header (OpenWhisk sends none).
DEFAULT_THROTTLE_RETRY_AFTER_S = 1.0
#: DigitalOcean's per-namespace quotas [DO-LIM], kept client-side by every worker process.
NAMESPACE_RATE_PER_MINUTE = 600
NAMESPACE_MAX_IN_FLIGHT = 120
# Upstream OpenWhisk holds a blocking call for at most 60 s (DigitalOcean: 30 s), then
# answers 202 with the activation id, which is polled.
_BLOCKING_WAIT_MAX_S = 60.0
_POLL_FIRST_DELAY_S = 0.2
_POLL_MAX_DELAY_S = 5.0
_MIB = 1024 * 1024
_MS_PER_S = 1000

#: DigitalOcean Functions' documented limits [DO-LIM], not upstream OpenWhisk's defaults.
LIMITS = ProviderLimits(
    min_memory_mb=128,
    max_memory_mb=1024,
    # Initialisation and run together.
    max_timeout_secs=900,
    max_package_bytes=48 * _MIB,
    max_request_bytes=_MIB,
    max_response_bytes=_MIB,
    max_account_concurrency=NAMESPACE_MAX_IN_FLIGHT,
)


class DigitalOceanOptions(ProviderOptions):
    """The options of a ``digitalocean`` executor: :class:`DigitalOceanExecutor`'s arguments.

    ``token`` is a secret, ``env:DIGITALOCEAN_TOKEN`` by default; it needs the
    ``function:read`` and ``function:create`` scopes (``function:admin`` covers both).
    """

    token: Secret = Field(default=f"env:{TOKEN_ENV}", validate_default=True)
    region: str = Field(min_length=1, pattern=r"^[a-z]+[0-9]*$")
    namespace_label: str = Field(DEFAULT_NAMESPACE_LABEL, min_length=1)
    function_prefix: str = Field(FUNCTION_NAME_PREFIX, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    runtime: str = Field(DEFAULT_RUNTIME, pattern=r"^python:[0-9a-z.]+$")
    api_base_url: str = DEFAULT_API_BASE_URL
    connect_timeout_s: float = Field(DEFAULT_CONNECT_TIMEOUT_S, gt=0)
    control_timeout_s: float = Field(DEFAULT_CONTROL_TIMEOUT_S, gt=0)
    deploy_timeout_s: float = Field(DEFAULT_DEPLOY_TIMEOUT_S, gt=0)
    invoke_margin_s: float = Field(DEFAULT_INVOKE_MARGIN_S, ge=0)
    throttle_retry_after_s: float = Field(DEFAULT_THROTTLE_RETRY_AFTER_S, ge=0)
    rate_per_minute: int = Field(NAMESPACE_RATE_PER_MINUTE, ge=1)
    max_in_flight: int = Field(NAMESPACE_MAX_IN_FLIGHT, ge=1)
    limits: Annotated[ProviderLimits, BeforeValidator(limits_over(LIMITS))] = LIMITS


# What an activation's response.status means for the job. A ``timeout: true`` annotation makes
# either failure a FaasTimeout: upstream documents a timeout as a developer error, and an
# Adobe I/O record shows it as an application error (apache/openwhisk#5170).
_ACTIVATION_ERRORS: Mapping[str, type[FaasError]] = {
    "application error": FunctionError,
    "action developer error": FunctionError,
    "whisk internal error": TransientInfrastructureError,
}
_TIMED_OUT_ANNOTATION = "timeout"
# Present on a cold start only: the milliseconds the runtime spent in /init.
_COLD_START_ANNOTATION = "initTime"
_DEPLOY_OVERRIDES: Mapping[int, type[FaasError]] = {400: InvalidConfig}


class DigitalOceanExecutor(FaasExecutor):
    """Deploys and invokes Blueprint jobs as OpenWhisk actions of a DigitalOcean namespace.

    One instance is meant to be shared by every thread of a worker process: it holds one pooled
    client for the DigitalOcean API and one for the namespace's ``api_host``, both built on
    first use, and finds the namespace once.

    Parameters
    ----------
    token:
        A DigitalOcean API token with the ``function:read`` and ``function:create`` scopes;
        ``$DIGITALOCEAN_TOKEN`` when None.
    region:
        The namespace's region (``nyc1``, ``fra1``, ...); a namespace of the same label in
        another region is never used.
    namespace_label:
        The label the namespace is found (or created) by.
    function_prefix:
        Actions are named ``<prefix>-<job_id>`` (:func:`providers.base.function_name`).
    runtime:
        The action kind, ``python:3.11`` by default.
    api_base_url:
        The DigitalOcean API's root (tests point it at a local fake).
    connect_timeout_s, control_timeout_s, deploy_timeout_s, invoke_margin_s:
        Connect timeout of every call; read timeout of namespace, get and delete calls, of a
        deploy, and the margin added to a job's ``timeout_secs`` for an invoke.
    throttle_retry_after_s:
        The wait a 429 without rate-limit headers carries.
    rate_per_minute, max_in_flight:
        The namespace's invocation quotas, kept by all executors of the process together.
    limits:
        What the platform accepts; :data:`LIMITS` when None.
    transport:
        Replaces the network transport of both clients (tests).

    Raises
    ------
    ValueError
        No token was given and ``$DIGITALOCEAN_TOKEN`` is not set, or ``api_base_url`` is not
        an absolute http(s) URL.
    """

    provider_name: ClassVar[str] = "digitalocean"
    default_limits: ClassVar[ProviderLimits] = LIMITS

    def __init__(
        self,
        token: str | None,
        region: str,
        *,
        namespace_label: str = DEFAULT_NAMESPACE_LABEL,
        function_prefix: str = FUNCTION_NAME_PREFIX,
        runtime: str = DEFAULT_RUNTIME,
        api_base_url: str = DEFAULT_API_BASE_URL,
        connect_timeout_s: float | timedelta = DEFAULT_CONNECT_TIMEOUT_S,
        control_timeout_s: float | timedelta = DEFAULT_CONTROL_TIMEOUT_S,
        deploy_timeout_s: float | timedelta = DEFAULT_DEPLOY_TIMEOUT_S,
        invoke_margin_s: float | timedelta = DEFAULT_INVOKE_MARGIN_S,
        throttle_retry_after_s: float = DEFAULT_THROTTLE_RETRY_AFTER_S,
        rate_per_minute: int = NAMESPACE_RATE_PER_MINUTE,
        max_in_flight: int = NAMESPACE_MAX_IN_FLIGHT,
        limits: ProviderLimits | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(limits=limits)
        token = token if token is not None else os.environ.get(TOKEN_ENV)
        if not token:
            raise ValueError(f"no DigitalOcean API token: pass token or set {TOKEN_ENV}")
        if rate_per_minute < 1 or max_in_flight < 1:
            raise ValueError("rate_per_minute and max_in_flight must be at least 1")
        self._region = region
        self._namespace_label = namespace_label
        self._function_prefix = function_prefix
        self._runtime = runtime
        self._connect_timeout_s = to_seconds(connect_timeout_s)
        self._control_timeout_s = to_seconds(control_timeout_s)
        self._deploy_timeout_s = to_seconds(deploy_timeout_s)
        self._invoke_margin_s = to_seconds(invoke_margin_s)
        self._throttle_retry_after_s = throttle_retry_after_s
        self._rate_per_minute = rate_per_minute
        self._max_in_flight = max_in_flight
        self._transport = transport
        self._api = PooledClient(
            HttpSettings(
                base_url=_absolute_http_url(api_base_url).rstrip("/"),
                timeout=self._timeout(self._control_timeout_s),
                auth=HeaderAuth("Authorization", f"Bearer {token}"),
                limits=DEFAULT_LIMITS,
            ),
            provider=self.provider_name,
            transport=transport,
        )
        self._namespace_lock = threading.Lock()
        self._bound: _BoundNamespace | None = None

    @classmethod
    def from_options(cls, options: DigitalOceanOptions) -> Self:
        """The executor ``options`` describe (what a settings file's ``[faas]`` builds)."""
        return cls(
            options.token.get_secret_value(),
            options.region,
            namespace_label=options.namespace_label,
            function_prefix=options.function_prefix,
            runtime=options.runtime,
            api_base_url=options.api_base_url,
            connect_timeout_s=options.connect_timeout_s,
            control_timeout_s=options.control_timeout_s,
            deploy_timeout_s=options.deploy_timeout_s,
            invoke_margin_s=options.invoke_margin_s,
            throttle_retry_after_s=options.throttle_retry_after_s,
            rate_per_minute=options.rate_per_minute,
            max_in_flight=options.max_in_flight,
            limits=options.limits,
        )

    def __repr__(self) -> str:
        bound = self._bound
        return (
            f"DigitalOceanExecutor(region={self._region!r}, "
            f"namespace_label={self._namespace_label!r}, "
            f"namespace={None if bound is None else bound.namespace.namespace!r}, "
            f"function_prefix={self._function_prefix!r}, runtime={self._runtime!r})"
        )

    @property
    def region(self) -> str:
        return self._region

    def function_id(self, job_id: int) -> str:
        """The action's name for ``job_id``: ``<function_prefix>-<job_id>``."""
        return function_name(job_id, self._function_prefix)

    def close(self) -> None:
        """Close the pooled connections; the next call opens new ones."""
        self._api.close()
        bound = self._bound
        if bound is not None:
            bound.actions.close()

    # -- primitives, in interface order -------------------------------------------------

    def _invoke(self, job_id: int, payload: bytes) -> InvokeReply:
        activation = self._run(job_id, to_json({"job_id": job_id, "args": list(payload)}))
        reply = validate_reply(
            _CoreReply,
            activation.response.result,
            provider=self.provider_name,
            what=f"activation {activation.activation_id} result",
        )
        if reply.success is False:
            raise FunctionError(
                truncate_message(f"job function failed: {reply.error or 'no reason given'}"),
                provider=self.provider_name,
            )
        return InvokeReply(
            body=reply.result,
            execution_ms=activation.duration,
            cold_start=activation.has_annotation(_COLD_START_ANNOTATION),
        )

    def _deploy_job(self, job_id: int, package: bytes, config: FaasConfig) -> FaasDeployment:
        if config.provider_config:
            raise InvalidConfig(
                "the digitalocean provider takes no provider_config keys, got "
                f"{sorted(config.provider_config)}",
                provider=self.provider_name,
            )
        if config.max_concurrency is not None:
            # Upstream's limits.concurrency is concurrency inside one container, not a cap on
            # the function; DigitalOcean documents no per-function cap.
            raise InvalidConfig(
                "max_concurrency cannot be honoured: DigitalOcean Functions has no "
                "per-function concurrency cap",
                provider=self.provider_name,
            )
        body = {
            "exec": {
                "kind": self._runtime,
                "code": base64.b64encode(package).decode("ascii"),
                "binary": True,
                "main": ACTION_MAIN,
            },
            "limits": {"timeout": config.timeout_secs * _MS_PER_S, "memory": config.memory_mb},
            # Readable by anyone who can read the namespace (docs/providers/digitalocean.md).
            "parameters": [{"key": ENV_PARAMETER, "value": dict(config.env_vars)}],
            "annotations": [{"key": "blueprint-job-id", "value": job_id}],
        }
        bound = self._namespace()
        action = bound.actions.put_action(
            self.function_id(job_id),
            body,
            timeout=self._timeout(self._deploy_timeout_s),
            overrides=_DEPLOY_OVERRIDES,
        )
        return self._deployment(job_id, bound, action, len(package))

    def _health_check(self, job_id: int) -> bool:
        bound = self._namespace()
        try:
            bound.actions.get_action(self.function_id(job_id))
        except NotDeployed:
            return False
        return self._answers_warmup(job_id)

    def _warm(self, job_id: int, instances: int) -> int:
        # Concurrent activations land in separate containers, so N at once warm N of them.
        workers = min(instances, self._max_in_flight)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="do-warm") as pool:
            answered = list(pool.map(lambda _: self._answers_warmup(job_id), range(instances)))
        return sum(answered)

    def _get_deployment(self, job_id: int) -> FaasDeployment:
        bound = self._namespace()
        action = bound.actions.get_action(self.function_id(job_id))
        return self._deployment(job_id, bound, action, None)

    def _undeploy_job(self, job_id: int) -> None:
        # The namespace stays: other jobs' actions live in it.
        self._namespace().actions.delete_action(self.function_id(job_id))

    # -- private helpers ----------------------------------------------------------------

    def _request_size(self, job_id: int, payload: bytes) -> int:
        # The action's parameters (the env vars) count toward the 1 MB of input parameters.
        size = super()._request_size(job_id, payload)
        env = self.job_config(job_id).env_vars
        return size + len(to_json(dict(env))) if env else size

    def _namespace(self) -> _BoundNamespace:
        """The namespace and its clients, found (or created) on first use, then cached."""
        with self._namespace_lock:
            if self._bound is None:
                namespace = find_or_create_namespace(
                    self._api,
                    self._namespace_label,
                    self._region,
                    provider=self.provider_name,
                    throttle_retry_after_s=self._throttle_retry_after_s,
                )
                self._bound = self._bind(namespace)
            return self._bound

    def _bind(self, namespace: Namespace) -> _BoundNamespace:
        try:
            api_host = _absolute_http_url(namespace.api_host).rstrip("/")
        except ValueError:
            raise SerializationError(
                f"namespace {namespace.namespace}'s api_host is not an absolute http(s) URL",
                provider=self.provider_name,
            ) from None
        http = PooledClient(
            HttpSettings(
                base_url=api_host,
                timeout=self._timeout(self._control_timeout_s),
                auth=httpx.BasicAuth(namespace.uuid, namespace.key),
                limits=DEFAULT_LIMITS,
            ),
            provider=self.provider_name,
            transport=self._transport,
        )
        actions = OpenWhiskClient(
            http,
            namespace.namespace,
            provider=self.provider_name,
            throttle_retry_after_s=self._throttle_retry_after_s,
        )
        limiter = shared_limiter(
            (namespace.api_host, namespace.namespace),
            self._rate_per_minute / 60,
            self._max_in_flight,
            provider=self.provider_name,
        )
        return _BoundNamespace(namespace, actions, limiter)

    def _run(self, job_id: int, content: bytes) -> Activation:
        """Invoke the action within the namespace's quotas; its finished activation's record.

        A failed activation is raised here, by :data:`_ACTIVATION_ERRORS`.
        """
        bound = self._namespace()
        name = self.function_id(job_id)
        budget_s = self.job_config(job_id).timeout_secs + self._invoke_margin_s
        started = time.monotonic()
        # The slot is held while a 202's activation is polled: the action is still running.
        with bound.limiter.slot(budget_s):
            # The platform answers 202 by _BLOCKING_WAIT_MAX_S at the latest; the margin
            # lets that answer arrive before our read timeout fires.
            read_s = min(budget_s, _BLOCKING_WAIT_MAX_S + self._invoke_margin_s)
            invoked = bound.actions.invoke(name, content, timeout=self._timeout(read_s))
            activation = invoked.record
            status: int | None = invoked.http_status
            if activation is None:
                remaining_s = max(budget_s - (time.monotonic() - started), _POLL_FIRST_DELAY_S)
                activation_id = invoked.activation_id
                activation = poll_until(
                    lambda: bound.actions.activation(activation_id),
                    what=f"activation {activation_id} of {name} to finish",
                    provider=self.provider_name,
                    policy=PollPolicy(
                        timeout_s=remaining_s,
                        first_delay_s=_POLL_FIRST_DELAY_S,
                        max_delay_s=_POLL_MAX_DELAY_S,
                    ),
                )
                status = None
        if activation.response.status != "success":
            raise self._activation_error(name, activation, status)
        return activation

    def _activation_error(self, name: str, activation: Activation, status: int | None) -> FaasError:
        status_text = activation.response.status
        error_type = _ACTIVATION_ERRORS.get(status_text, PermanentInfrastructureError)
        if activation.annotation(_TIMED_OUT_ANNOTATION) is True:
            error_type = FaasTimeout
        reason = error_message_of(activation) or "no reason given"
        return error_type(
            truncate_message(
                f"{name} activation {activation.activation_id}: "
                f"{activation.response.status}: {reason}"
            ),
            provider=self.provider_name,
            status=status,
        )

    def _answers_warmup(self, job_id: int) -> bool:
        """Whether the action answers a warm-up request (which runs no job)."""
        try:
            activation = self._run(job_id, to_json(WARMUP_REQUEST))
        except FunctionError:
            return False
        reply = activation.response.result
        return isinstance(reply, dict) and reply.get("warmup") is True

    def _deployment(
        self,
        job_id: int,
        bound: _BoundNamespace,
        action: Action,
        package_size_bytes: int | None,
    ) -> FaasDeployment:
        namespace = bound.namespace
        return FaasDeployment(
            function_id=action.name,
            job_id=job_id,
            provider=self.provider_name,
            endpoint=f"{namespace.api_host.rstrip('/')}{bound.actions.action_url(action.name)}",
            memory_mb=action.limits.memory,
            timeout_secs=action.limits.timeout // _MS_PER_S,
            status=f"deployed (version {action.version})",
            deployed_at=None
            if action.updated is None
            else datetime.fromtimestamp(action.updated / _MS_PER_S, UTC),
            package_size_bytes=package_size_bytes,
        )

    def _timeout(self, read_s: float) -> httpx.Timeout:
        return httpx.Timeout(
            connect=self._connect_timeout_s,
            read=read_s,
            write=self._control_timeout_s,
            pool=self._control_timeout_s,
        )


@dataclass(frozen=True, slots=True)
class _BoundNamespace:
    """The namespace found, its OpenWhisk client, and the process's limiter for it."""

    namespace: Namespace
    actions: OpenWhiskClient
    limiter: InvocationLimiter


def _core_bytes(value: object) -> bytes:
    if not isinstance(value, list):
        raise ValueError("must be a byte array")
    try:
        return bytes(value)
    except (TypeError, ValueError):
        raise ValueError("is not an array of 0..255") from None


class _CoreReply(BaseModel):
    """The handler core's reply, which ``main`` returns as the activation's result."""

    model_config = ConfigDict(frozen=True)

    result: Annotated[bytes, PlainValidator(_core_bytes)] = b""
    success: bool | None = None
    error: OptionalText = None


def _absolute_http_url(url: str) -> str:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as error:
        raise ValueError(f"not a URL: {error}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError("the URL must be absolute, with an http or https scheme")
    return url


#: The ``digitalocean`` provider, found by :func:`providers.registry.provider_spec`.
PROVIDER = ProviderSpec(
    executor=DigitalOceanExecutor,
    options=DigitalOceanOptions,
    create=DigitalOceanExecutor.from_options,
    build_package=build_digitalocean_package,
    price_list="digitalocean",
)
