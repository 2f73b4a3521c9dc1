"""The executor for any platform speaking the Custom FaaS HTTP contract v1.

It is a client of the contract that ``docs/custom-faas-contract.md`` describes: all six
endpoints, any auth header, client certificates, and explicit timeouts (the original client
had none, called a non-contract invoke path and ignored ``success: false``). Packages come
from :func:`providers.packaging.build_custom_package`.

The provider ``custom`` (:data:`PROVIDER`): built from :class:`CustomOptions` by a settings
file, or constructed in code.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Annotated, ClassVar, Self, TypeVar
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator
from pydantic_core import to_json

from providers._durations import to_seconds
from providers._http import raise_for_status, response_message
from providers._pool import (
    DEFAULT_CONNECT_TIMEOUT_S,
    DEFAULT_LIMITS,
    ClientCert,
    HttpSettings,
    PooledClient,
)
from providers._replies import (
    ByteArray,
    OptionalText,
    Rfc3339Datetime,
    json_object_or_none,
    parse_reply,
    reply_name,
    validate_reply,
)
from providers.base import (
    FUNCTION_NAME_PREFIX,
    FaasConfig,
    FaasDeployment,
    FaasExecutor,
    InvokeReply,
    check_job_id,
    function_name,
)
from providers.errors import (
    AlreadyDeployed,
    FaasError,
    FaasTimeout,
    FunctionError,
    InvalidConfig,
)
from providers.limits import ProviderLimits, limits_over
from providers.options import ProviderOptions, Secret
from providers.packaging import build_custom_package
from providers.registry import ProviderSpec

__all__ = [
    "CONFIG_HEADER",
    "DEFAULT_CONTROL_TIMEOUT_S",
    "DEFAULT_DEPLOY_TIMEOUT_S",
    "DEFAULT_INVOKE_MARGIN_S",
    "LIMITS",
    "PROVIDER",
    "AuthHeader",
    "ClientCertFiles",
    "CustomOptions",
    "HttpFaasExecutor",
]

CONFIG_HEADER = "X-Blueprint-Config"
DEFAULT_CONTROL_TIMEOUT_S = 30.0
# A deploy uploads up to 50 MB and the platform unpacks up to 250 MB before it answers.
DEFAULT_DEPLOY_TIMEOUT_S = 120.0
# Added to the job's timeout_secs for the invoke read timeout, so the platform's own timeout
# answer (with its error body) arrives before ours fires.
DEFAULT_INVOKE_MARGIN_S = 10.0
_MIB = 1024 * 1024
#: What the reference server enforces by default (``providers/reference_server/_limits.py``
#: and ``_models.py``; a test keeps the two equal). Another platform speaking the contract
#: may differ: override fields with the ``limits`` option.
LIMITS = ProviderLimits(
    min_memory_mb=128,
    max_memory_mb=10_240,
    memory_step_mb=64,
    max_timeout_secs=900,
    max_package_bytes=50 * _MIB,
    # The invoke body: bytes travel as a JSON integer array, up to 4 characters a byte.
    max_request_bytes=64 * _MIB,
    # What a bootstrap may write on stdout for one reply.
    max_response_bytes=64 * _MIB,
    max_concurrency=1_000,
    max_env_vars=256,
    max_env_value_chars=32_768,
)


class AuthHeader(ProviderOptions):
    """One header sent with every request, e.g. ``Authorization: Bearer ...``; a secret."""

    name: str = Field(min_length=1)
    value: Secret


class ClientCertFiles(ProviderOptions):
    """A client certificate for mTLS; ``key_path`` may be omitted when the PEM holds both."""

    cert_path: Path
    key_path: Path | None = None


class CustomOptions(ProviderOptions):
    """The options of a ``custom`` executor: :class:`HttpFaasExecutor`'s arguments.

    ``auth_header`` and ``headers`` values are secrets (``env:NAME`` reads ``$NAME``); they
    never appear in a repr or an error.
    """

    base_url: str
    function_prefix: str = Field(FUNCTION_NAME_PREFIX, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    auth_header: AuthHeader | None = None
    headers: Mapping[str, Secret] = Field(default_factory=dict)
    client_cert: ClientCertFiles | None = None
    verify: bool | Path = True
    connect_timeout_s: float = Field(DEFAULT_CONNECT_TIMEOUT_S, gt=0)
    control_timeout_s: float = Field(DEFAULT_CONTROL_TIMEOUT_S, gt=0)
    deploy_timeout_s: float = Field(DEFAULT_DEPLOY_TIMEOUT_S, gt=0)
    invoke_margin_s: float = Field(DEFAULT_INVOKE_MARGIN_S, ge=0)
    limits: Annotated[ProviderLimits, BeforeValidator(limits_over(LIMITS))] = LIMITS

    @field_validator("base_url")
    @classmethod
    def _is_an_absolute_http_url(cls, value: str) -> str:
        return _absolute_http_url(value)


_API_PREFIX = "/api/functions"
_BAD_REQUEST_ON_DEPLOY: Mapping[int, type[FaasError]] = {400: InvalidConfig}
# Machine codes of a failed execution (`success: false`) that are not the job's own failure.
# The contract leaves codes to the platform; these are our reference server's. Any other
# code, or none, is a FunctionError.
_FAILURE_CODES: Mapping[str, type[FaasError]] = {"FUNCTION_TIMEOUT": FaasTimeout}


class HttpFaasExecutor(FaasExecutor):
    """Deploys and invokes Blueprint jobs on a platform speaking the Custom FaaS contract.

    One instance is meant to be shared by every thread of a worker process: it holds one
    pooled HTTP client, built on first use. Configure it (``with_*`` builders) before sharing.

    Parameters
    ----------
    base_url:
        The platform's root, e.g. ``https://faas.example.com``; paths are ``/api/functions/...``.
    control_timeout_s:
        Read and write timeout of health, get, warm and undeploy calls.
    deploy_timeout_s:
        Read timeout of a deploy, which uploads and unpacks the package.
    connect_timeout_s:
        Connect timeout of every call.
    invoke_margin_s:
        Added to the job's ``timeout_secs`` to make an invoke's read timeout.
    function_prefix:
        Function ids are ``<prefix>-<job_id>`` (:func:`providers.base.function_name`).
    headers:
        Extra headers sent with every request; treated as secrets (see ``with_auth_header``).
    cert_path, key_path:
        A client certificate for mTLS (see ``with_client_cert``).
    verify:
        True for the system CA bundle, a CA bundle path for a private CA, False to skip TLS
        verification (tests only).
    limits:
        What the platform accepts; :data:`LIMITS` (the reference server's) when None.
    transport:
        Replaces the network transport (tests).

    Raises
    ------
    ValueError
        ``base_url`` is not an absolute http(s) URL, or a timeout is negative.
    """

    provider_name: ClassVar[str] = "custom"
    default_limits: ClassVar[ProviderLimits] = LIMITS

    def __init__(
        self,
        base_url: str,
        *,
        control_timeout_s: float | timedelta = DEFAULT_CONTROL_TIMEOUT_S,
        deploy_timeout_s: float | timedelta = DEFAULT_DEPLOY_TIMEOUT_S,
        connect_timeout_s: float | timedelta = DEFAULT_CONNECT_TIMEOUT_S,
        invoke_margin_s: float | timedelta = DEFAULT_INVOKE_MARGIN_S,
        function_prefix: str = FUNCTION_NAME_PREFIX,
        headers: Mapping[str, str] | None = None,
        cert_path: str | Path | None = None,
        key_path: str | Path | None = None,
        verify: bool | str | Path = True,
        limits: ProviderLimits | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(limits=limits)
        self._base_url = _absolute_http_url(base_url).rstrip("/")
        self._function_prefix = function_prefix
        self._connect_timeout_s = to_seconds(connect_timeout_s)
        self._control_timeout_s = to_seconds(control_timeout_s)
        self._deploy_timeout_s = to_seconds(deploy_timeout_s)
        self._invoke_margin_s = to_seconds(invoke_margin_s)
        self._job_endpoints: dict[int, str] = {}
        settings = HttpSettings(
            base_url=self._base_url,
            timeout=self._timeout(self._control_timeout_s),
            headers=dict(headers or {}),
            client_cert=None if cert_path is None else _client_cert(cert_path, key_path),
            verify=Path(verify) if isinstance(verify, str) else verify,
            limits=DEFAULT_LIMITS,
        )
        self._http = PooledClient(settings, provider=self.provider_name, transport=transport)

    @classmethod
    def from_options(cls, options: CustomOptions) -> Self:
        """The executor ``options`` describe (what a settings file's ``[faas]`` builds)."""
        headers = {name: value.get_secret_value() for name, value in options.headers.items()}
        if options.auth_header is not None:
            headers[options.auth_header.name] = options.auth_header.value.get_secret_value()
        cert = options.client_cert
        return cls(
            options.base_url,
            control_timeout_s=options.control_timeout_s,
            deploy_timeout_s=options.deploy_timeout_s,
            connect_timeout_s=options.connect_timeout_s,
            invoke_margin_s=options.invoke_margin_s,
            function_prefix=options.function_prefix,
            headers=headers,
            cert_path=None if cert is None else cert.cert_path,
            key_path=None if cert is None else cert.key_path,
            verify=options.verify,
            limits=options.limits,
        )

    def __repr__(self) -> str:
        settings = self._http.settings
        return (
            f"HttpFaasExecutor(base_url={self._base_url!r}, "
            f"function_prefix={self._function_prefix!r}, "
            f"header_names={sorted(settings.headers)!r}, client_cert={settings.client_cert!r})"
        )

    @property
    def scope(self) -> str:
        """The platform's origin and path (any user or password in the URL left out)."""
        parts = urlsplit(self._base_url)
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        return f"{self.provider_name}:{parts.scheme}://{host}{parts.path}"

    # -- configuration ------------------------------------------------------------------

    def with_job_endpoint(self, job_id: int, url: str) -> Self:
        """Invoke ``job_id`` at ``url`` instead of ``<base>/api/functions/<id>/invoke``.

        Only invocations use it; deploy, health, warm and undeploy stay on the base URL. The
        executor's headers and client certificate are sent to ``url`` too.

        Raises
        ------
        ValueError
            ``url`` is not an absolute http(s) URL.
        """
        self._job_endpoints[check_job_id(job_id)] = _absolute_http_url(url)
        return self

    def with_auth_header(self, name: str, value: str) -> Self:
        """Send ``name: value`` with every request (``Authorization: Bearer ...``, an API key).

        The value is a secret: it never appears in a repr, a log line or an error message.
        """
        self._http.configure(self._http.settings.with_header(name, value))
        return self

    def with_client_cert(self, cert_path: str | Path, key_path: str | Path | None = None) -> Self:
        """Present a client certificate (mTLS); files are read when the client is built.

        ``key_path`` may be omitted when ``cert_path`` holds both certificate and key (PEM).
        """
        cert = _client_cert(cert_path, key_path)
        self._http.configure(replace(self._http.settings, client_cert=cert))
        return self

    def function_id(self, job_id: int) -> str:
        """The platform-side id of ``job_id``'s function: ``<function_prefix>-<job_id>``."""
        return function_name(job_id, self._function_prefix)

    def close(self) -> None:
        """Close the pooled connections; the next call opens new ones."""
        self._http.close()

    # -- primitives, in interface order -------------------------------------------------

    def _invoke(self, job_id: int, payload: bytes) -> InvokeReply:
        response = self._http.request(
            "POST",
            self._invoke_url(job_id),
            content=to_json({"job_id": job_id, "args": list(payload)}),
            headers={"Content-Type": "application/json"},
            timeout=self._invoke_timeout(job_id),
        )
        # A failed execution is a 500 whose body says success: false; a 200 saying so is a
        # failure too (the original client took it for a result). The body is decoded once.
        body = json_object_or_none(response.content) if response.status_code in (200, 500) else None
        if body is not None and body.get("success") is False:
            raise self._function_error(body, response)
        raise_for_status(response, provider=self.provider_name)
        reply = validate_reply(
            _InvokeReplyBody, body, provider=self.provider_name, what=reply_name(response)
        )
        return InvokeReply(
            body=reply.result,
            execution_ms=reply.execution_ms,
            cold_start=reply.cold_start,
            memory_used_mb=reply.memory_used_mb,
        )

    def _deploy_job(self, job_id: int, package: bytes, config: FaasConfig) -> FaasDeployment:
        """PUT the package; on 409 DELETE the old function and PUT once more.

        The base's ``deploy_job`` promises "create or replace", and the contract's deploy only
        creates. A second 409 means another deployer won the race in between: it is raised.
        """
        if config.provider_config:
            raise InvalidConfig(
                "the custom provider takes no provider_config keys, got "
                f"{sorted(config.provider_config)}",
                provider=self.provider_name,
            )
        config_header = _encode_config(config)
        try:
            response = self._put_package(job_id, package, config_header)
        except AlreadyDeployed:
            self._undeploy_job(job_id)
            response = self._put_package(job_id, package, config_header)
        return self._deployment(job_id, self._parse(_DeploymentBody, response), len(package))

    def _health_check(self, job_id: int) -> bool:
        response = self._http.request("GET", f"{self._function_path(job_id)}/health")
        if response.status_code in (404, 503):
            return False
        raise_for_status(response, provider=self.provider_name)
        return True

    def _warm(self, job_id: int, instances: int) -> int:
        response = self._http.request(
            "POST", f"{self._function_path(job_id)}/warm", params={"instances": instances}
        )
        raise_for_status(response, provider=self.provider_name)
        return self._parse(_WarmBody, response).instances_warmed

    def _get_deployment(self, job_id: int) -> FaasDeployment:
        response = self._http.request("GET", self._function_path(job_id))
        raise_for_status(response, provider=self.provider_name)
        return self._deployment(job_id, self._parse(_DeploymentBody, response), None)

    def _undeploy_job(self, job_id: int) -> None:
        response = self._http.request("DELETE", self._function_path(job_id))
        if response.status_code != 404:
            raise_for_status(response, provider=self.provider_name)

    # -- private helpers ----------------------------------------------------------------

    def _function_path(self, job_id: int) -> str:
        return f"{_API_PREFIX}/{self.function_id(job_id)}"

    def _invoke_url(self, job_id: int) -> str:
        return self._job_endpoints.get(job_id) or f"{self._function_path(job_id)}/invoke"

    def _timeout(self, read_s: float) -> httpx.Timeout:
        return httpx.Timeout(
            connect=self._connect_timeout_s,
            read=read_s,
            write=self._control_timeout_s,
            pool=self._control_timeout_s,
        )

    def _invoke_timeout(self, job_id: int) -> httpx.Timeout:
        return self._timeout(self.job_config(job_id).timeout_secs + self._invoke_margin_s)

    def _put_package(self, job_id: int, package: bytes, config_header: str) -> httpx.Response:
        response = self._http.request(
            "PUT",
            self._function_path(job_id),
            content=package,
            headers={"Content-Type": "application/zip", CONFIG_HEADER: config_header},
            timeout=self._timeout(self._deploy_timeout_s),
        )
        raise_for_status(response, provider=self.provider_name, overrides=_BAD_REQUEST_ON_DEPLOY)
        return response

    def _parse(self, model: type[_Reply], response: httpx.Response) -> _Reply:
        return parse_reply(model, response, provider=self.provider_name)

    def _deployment(
        self, job_id: int, body: _DeploymentBody, package_size_bytes: int | None
    ) -> FaasDeployment:
        return FaasDeployment(
            function_id=body.function_id,
            job_id=job_id,
            provider=self.provider_name,
            endpoint=body.endpoint,
            memory_mb=body.memory_mb,
            timeout_secs=body.timeout_secs,
            status=body.status,
            deployed_at=body.deployed_at,
            package_size_bytes=int(body.binary_size_bytes)
            if body.binary_size_bytes is not None
            else package_size_bytes,
            cold_start_ms=body.cold_start_ms,
        )

    def _function_error(self, body: Mapping[str, object], response: httpx.Response) -> FaasError:
        failure = validate_reply(
            _FailureBody, body, provider=self.provider_name, what=reply_name(response)
        )
        message = failure.error or "the function failed"
        error_type = (
            FunctionError
            if failure.code is None
            else _FAILURE_CODES.get(failure.code, FunctionError)
        )
        return error_type(
            # A function may echo the request's headers (its bearer token) in its error.
            response_message(response, f"job function failed: {message}"),
            provider=self.provider_name,
            status=response.status_code,
        )


_Reply = TypeVar("_Reply", bound=BaseModel)


class _InvokeReplyBody(BaseModel):
    """A successful invoke's reply; the reference server adds ``cold_start``."""

    model_config = ConfigDict(strict=True, frozen=True)

    result: ByteArray
    execution_ms: float | None = None
    cold_start: bool | None = None
    memory_used_mb: float | None = None


class _FailureBody(BaseModel):
    """A failed execution (``success: false``): read leniently, it is raised whatever it says."""

    model_config = ConfigDict(frozen=True)

    error: OptionalText = None
    code: OptionalText = None


class _DeploymentBody(BaseModel):
    """The record a deploy and a get answer; ``binary_size_bytes`` and the date come from get."""

    model_config = ConfigDict(strict=True, frozen=True)

    function_id: str
    endpoint: OptionalText = None
    memory_mb: int
    timeout_secs: int
    status: str
    deployed_at: Rfc3339Datetime | None = None
    binary_size_bytes: float | None = None
    cold_start_ms: float | None = None


class _WarmBody(BaseModel):
    model_config = ConfigDict(strict=True, frozen=True)

    instances_warmed: int


def _client_cert(cert_path: str | Path, key_path: str | Path | None) -> ClientCert:
    return ClientCert(Path(cert_path), None if key_path is None else Path(key_path))


def _absolute_http_url(url: str) -> str:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as error:
        raise ValueError(f"not a URL: {error}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError("the URL must be absolute, with an http or https scheme")
    return url


def _encode_config(config: FaasConfig) -> str:
    """The ``X-Blueprint-Config`` value: base64 of the contract's config JSON.

    ``max_concurrency`` is left out when unset so the platform applies its own default.
    """
    fields: dict[str, object] = {
        "memory_mb": config.memory_mb,
        "timeout_secs": config.timeout_secs,
        "env_vars": dict(config.env_vars),
    }
    if config.max_concurrency is not None:
        fields["max_concurrency"] = config.max_concurrency
    return base64.b64encode(json.dumps(fields).encode("utf-8")).decode("ascii")


#: The ``custom`` provider, found by :func:`providers.registry.provider_spec`.
PROVIDER = ProviderSpec(
    executor=HttpFaasExecutor,
    options=CustomOptions,
    create=HttpFaasExecutor.from_options,
    build_package=build_custom_package,
    price_list="custom",
)
