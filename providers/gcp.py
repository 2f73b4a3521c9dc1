"""The executor for Google Cloud Functions (2nd gen), over the Cloud Functions v2 REST API.

A deploy asks ``functions:generateUploadUrl`` for a signed URL, PUTs the source zip to it
(:func:`providers.packaging.build_gcp_package`), creates the function (or, when it exists,
PATCHes exactly the fields we set) and polls the long-running operation until it is done.
Invocations POST to the function's ``serviceConfig.uri`` with an ID token whose audience is
that URI, learnt once and cached: no control-plane call per invocation (the original crate did
a GET before every call, sent the access token where an ID token is needed, slept a fixed 5 s
instead of polling, and read a memory of ``1Gi`` as 512).

The provider ``gcp`` (:data:`PROVIDER`): built from :class:`GcpOptions` by a settings file, or
constructed in code. Tokens come from google-auth (:mod:`providers._gcp_tokens`), imported
when the first token is fetched.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, ClassVar, Self, TypeVar

import httpx
from pydantic import BaseModel, BeforeValidator, Field, field_validator
from pydantic_core import to_json

from providers._auth import BearerTokenAuth, FunctionKeyAuth
from providers._durations import to_seconds
from providers._gcp_tokens import GoogleTokens, TokenProvider
from providers._gcp_wire import Function, Operation, RpcStatus, UploadUrl, field_paths, function_in
from providers._http import (
    error_for_response,
    parse_retry_after,
    raise_for_status,
    read_nested_error,
    response_message,
    safe_url,
    truncate_message,
)
from providers._poll import SYSTEM_CLOCK, Clock, Pending, PollPolicy, poll_until
from providers._pool import DEFAULT_CONNECT_TIMEOUT_S, HttpSettings, PooledClient
from providers._replies import (
    CoreReply,
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
    function_name,
)
from providers.errors import (
    AlreadyDeployed,
    AuthError,
    FaasError,
    FaasTimeout,
    FunctionError,
    InvalidConfig,
    NotDeployed,
    PermanentInfrastructureError,
    Throttled,
    TransientInfrastructureError,
)
from providers.limits import ProviderLimits, limits_over
from providers.options import ProviderOptions
from providers.packaging import WARMUP_REQUEST, build_gcp_package
from providers.packaging.gcp import ENTRY_POINT
from providers.registry import ProviderSpec

__all__ = [
    "DEFAULT_API_BASE_URL",
    "DEFAULT_CONTROL_TIMEOUT_S",
    "DEFAULT_DEPLOY_TIMEOUT_S",
    "DEFAULT_INVOKE_MARGIN_S",
    "DEFAULT_MAX_INSTANCES",
    "DEFAULT_RUNTIME",
    "LIMITS",
    "PROVIDER",
    "RPC_CODE_ERRORS",
    "CloudFunctionExecutor",
    "GcpOptions",
    "GoogleTokens",
    "TokenProvider",
    "check_function_prefix",
]

DEFAULT_API_BASE_URL = "https://cloudfunctions.googleapis.com"
DEFAULT_RUNTIME = "python312"
DEFAULT_CONTROL_TIMEOUT_S = 30.0
# A deploy runs Cloud Build and rolls out a Cloud Run revision: minutes, not seconds.
DEFAULT_DEPLOY_TIMEOUT_S = 900.0
# Added to the job's timeout_secs for the invoke read timeout, so the platform's own timeout
# answer (504) arrives before ours fires.
DEFAULT_INVOKE_MARGIN_S = 10.0
#: ``maxInstanceCount`` when the job sets no ``max_concurrency``: GCP's own 2nd gen default,
#: written out so that a redeploy resets an earlier cap.
DEFAULT_MAX_INSTANCES = 100
_MIB = 1024 * 1024
#: The 2nd gen column of the Cloud Functions quotas page (research notes, "Limits").
LIMITS = ProviderLimits(
    min_memory_mb=128,
    max_memory_mb=32_768,
    max_timeout_secs=3_600,
    # A source upload of at most 100 MB compressed.
    max_package_bytes=100 * 1_000_000,
    max_request_bytes=32 * _MIB,
    max_response_bytes=32 * _MIB,
    # Cloud Run's default cap on instances per service; quota raises it.
    max_concurrency=1_000,
    max_env_vars=1_000,
    max_env_value_chars=32_768,
)

# GCP's function id rule: lower-case letters, digits and hyphens, 4 to 63 characters,
# starting with a letter. A job id adds up to 11 characters ("-4294967295") to the prefix,
# so a prefix that passes check_function_prefix makes only valid ids.
_PREFIX = re.compile(r"[a-z][a-z0-9-]*")
_MAX_PREFIX_CHARS = 63 - len("-4294967295")
_RUNTIME = re.compile(r"python3[0-9]{1,2}")
_PROJECT_ID = re.compile(r"[a-z][a-z0-9-]{4,28}[a-z0-9]")
_REGION = re.compile(r"[a-z]+-[a-z]+[0-9]+")


def check_function_prefix(prefix: str) -> str:
    """Return ``prefix`` if ``<prefix>-<any job id>`` is a valid GCP function id.

    Raises
    ------
    ValueError
        The prefix has characters other than lower-case letters, digits and hyphens, does not
        start with a letter, or is longer than 52 characters.
    """
    if not _PREFIX.fullmatch(prefix) or len(prefix) > _MAX_PREFIX_CHARS:
        raise ValueError(
            "function_prefix must start with a lower-case letter, hold only lower-case "
            f"letters, digits and '-', and be at most {_MAX_PREFIX_CHARS} characters"
        )
    return prefix


class GcpOptions(ProviderOptions):
    """The options of a ``gcp`` executor: :class:`CloudFunctionExecutor`'s arguments.

    Credentials are never options: they come from the host's Application Default Credentials,
    a service-account file named here, or impersonation of a service account.
    """

    project_id: Annotated[str, Field(pattern=f"^{_PROJECT_ID.pattern}$")]
    region: Annotated[str, Field(pattern=f"^{_REGION.pattern}$")]
    function_prefix: str = FUNCTION_NAME_PREFIX
    runtime: Annotated[str, Field(pattern=f"^{_RUNTIME.pattern}$")] = DEFAULT_RUNTIME
    credentials_file: Path | None = None
    impersonate_service_account: str | None = Field(None, pattern=r"^[^@\s]+@[^@\s]+$")
    api_base_url: str = DEFAULT_API_BASE_URL
    connect_timeout_s: float = Field(DEFAULT_CONNECT_TIMEOUT_S, gt=0)
    control_timeout_s: float = Field(DEFAULT_CONTROL_TIMEOUT_S, gt=0)
    deploy_timeout_s: float = Field(DEFAULT_DEPLOY_TIMEOUT_S, gt=0)
    invoke_margin_s: float = Field(DEFAULT_INVOKE_MARGIN_S, ge=0)
    limits: Annotated[ProviderLimits, BeforeValidator(limits_over(LIMITS))] = LIMITS

    @field_validator("function_prefix")
    @classmethod
    def _prefix_makes_valid_ids(cls, value: str) -> str:
        return check_function_prefix(value)


#: ``google.rpc.Code`` of a failed operation → its name and our error. A failed operation is
#: permanent unless the code says the service was busy or briefly unable.
RPC_CODE_ERRORS: Mapping[int, tuple[str, type[FaasError]]] = {
    1: ("CANCELLED", PermanentInfrastructureError),
    2: ("UNKNOWN", PermanentInfrastructureError),
    3: ("INVALID_ARGUMENT", InvalidConfig),
    4: ("DEADLINE_EXCEEDED", FaasTimeout),
    5: ("NOT_FOUND", NotDeployed),
    6: ("ALREADY_EXISTS", AlreadyDeployed),
    7: ("PERMISSION_DENIED", AuthError),
    8: ("RESOURCE_EXHAUSTED", Throttled),
    9: ("FAILED_PRECONDITION", PermanentInfrastructureError),
    10: ("ABORTED", TransientInfrastructureError),
    11: ("OUT_OF_RANGE", InvalidConfig),
    12: ("UNIMPLEMENTED", PermanentInfrastructureError),
    13: ("INTERNAL", TransientInfrastructureError),
    14: ("UNAVAILABLE", TransientInfrastructureError),
    15: ("DATA_LOSS", PermanentInfrastructureError),
    16: ("UNAUTHENTICATED", AuthError),
}
_BAD_REQUEST_IS_INVALID_CONFIG: Mapping[int, type[FaasError]] = {400: InvalidConfig}
# While an operation is polled, these answers to the poll itself mean "ask again later".
_POLL_AGAIN_STATUSES = frozenset({429, 500, 502, 503, 504})
_INVOKER_ROLE_HINT = (
    "the caller lacks the invoker role (roles/run.invoker) on the function's Cloud Run service"
)
_MAX_WARM_THREADS = 32
_JSON_HEADERS = {"Content-Type": "application/json"}


class CloudFunctionExecutor(FaasExecutor):
    """Deploys and invokes Blueprint jobs as Cloud Functions (2nd gen) in one project and region.

    One instance is meant to be shared by every thread of a worker process: it holds pooled
    HTTP clients and the two token caches, all built lazily.

    Parameters
    ----------
    project_id, region:
        Where the functions live (``projects/{project_id}/locations/{region}``).
    function_prefix:
        Function ids are ``<prefix>-<job_id>``; checked by :func:`check_function_prefix`.
    runtime:
        The ``python3xx`` runtime the source is built for.
    credentials:
        Where tokens come from; :class:`~providers._gcp_tokens.GoogleTokens` (Application
        Default Credentials) when None.
    api_base_url:
        The Cloud Functions API root.
    connect_timeout_s, control_timeout_s:
        Connect timeout of every call; read timeout of control-plane calls.
    deploy_timeout_s:
        How long a deploy or an undeploy waits for its operation (and may take to upload).
    invoke_margin_s:
        Added to the job's ``timeout_secs`` to make an invoke's read timeout.
    poll_policy, clock:
        How operations are polled; ``poll_policy`` defaults to waits of 1 s growing to 10 s
        within ``deploy_timeout_s``.
    limits:
        What the platform accepts; :data:`LIMITS` when None.
    transport:
        Replaces the network transport of every client (tests).

    Raises
    ------
    ValueError
        A bad project id, region, runtime or function prefix, or a negative timeout.
    """

    provider_name: ClassVar[str] = "gcp"
    default_limits: ClassVar[ProviderLimits] = LIMITS

    def __init__(
        self,
        project_id: str,
        region: str,
        *,
        function_prefix: str = FUNCTION_NAME_PREFIX,
        runtime: str = DEFAULT_RUNTIME,
        credentials: TokenProvider | None = None,
        api_base_url: str = DEFAULT_API_BASE_URL,
        connect_timeout_s: float | timedelta = DEFAULT_CONNECT_TIMEOUT_S,
        control_timeout_s: float | timedelta = DEFAULT_CONTROL_TIMEOUT_S,
        deploy_timeout_s: float | timedelta = DEFAULT_DEPLOY_TIMEOUT_S,
        invoke_margin_s: float | timedelta = DEFAULT_INVOKE_MARGIN_S,
        poll_policy: PollPolicy | None = None,
        clock: Clock = SYSTEM_CLOCK,
        limits: ProviderLimits | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(limits=limits)
        for value, pattern, what in (
            (project_id, _PROJECT_ID, "project_id"),
            (region, _REGION, "region"),
            (runtime, _RUNTIME, "runtime"),
        ):
            if not pattern.fullmatch(value):
                raise ValueError(f"{what} {value!r} is not a GCP {what}")
        self._project_id = project_id
        self._region = region
        self._function_prefix = check_function_prefix(function_prefix)
        self._runtime = runtime
        self._tokens: TokenProvider = GoogleTokens() if credentials is None else credentials
        self._connect_timeout_s = to_seconds(connect_timeout_s)
        self._control_timeout_s = to_seconds(control_timeout_s)
        self._deploy_timeout_s = to_seconds(deploy_timeout_s)
        self._invoke_margin_s = to_seconds(invoke_margin_s)
        self._poll_policy = poll_policy or PollPolicy(
            timeout_s=self._deploy_timeout_s, first_delay_s=1.0, max_delay_s=10.0
        )
        self._clock = clock
        self._parent = f"projects/{project_id}/locations/{region}"
        # serviceConfig.uri by job id: learnt from a deploy or a GET, dropped when a call
        # proves it stale (404) or the function is removed.
        self._uris: dict[int, str] = {}
        control = self._timeout(self._control_timeout_s)
        provider = self.provider_name
        self._api = PooledClient(
            HttpSettings(
                base_url=api_base_url.rstrip("/"),
                timeout=control,
                auth=BearerTokenAuth(self._tokens.access_token, provider=provider),
            ),
            provider=provider,
            transport=transport,
        )
        # The signed URL is its own credential: no Authorization header goes with it.
        self._upload = PooledClient(
            HttpSettings(timeout=self._timeout(self._deploy_timeout_s)),
            provider=provider,
            transport=transport,
        )
        self._invoker = PooledClient(
            HttpSettings(
                timeout=control,
                auth=FunctionKeyAuth(
                    self._tokens.id_token,
                    provider=provider,
                    # The audience is the URI posted to, which is serviceConfig.uri itself.
                    function_of=_audience,
                    header_name="Authorization",
                    scheme="Bearer",
                    # A 403 is a missing role: a fresh token would be refused the same way.
                    refresh_on={401},
                ),
            ),
            provider=provider,
            transport=transport,
        )

    @classmethod
    def from_options(cls, options: GcpOptions) -> Self:
        """The executor ``options`` describe (what a settings file's ``[faas]`` builds)."""
        return cls(
            options.project_id,
            options.region,
            function_prefix=options.function_prefix,
            runtime=options.runtime,
            credentials=GoogleTokens(
                credentials_file=options.credentials_file,
                impersonate_service_account=options.impersonate_service_account,
            ),
            api_base_url=options.api_base_url,
            connect_timeout_s=options.connect_timeout_s,
            control_timeout_s=options.control_timeout_s,
            deploy_timeout_s=options.deploy_timeout_s,
            invoke_margin_s=options.invoke_margin_s,
            limits=options.limits,
        )

    def __repr__(self) -> str:
        return (
            f"CloudFunctionExecutor(project_id={self._project_id!r}, region={self._region!r}, "
            f"function_prefix={self._function_prefix!r}, runtime={self._runtime!r}, "
            f"credentials={self._tokens!r})"
        )

    @property
    def region(self) -> str:
        return self._region

    def function_id(self, job_id: int) -> str:
        """The function id of ``job_id``: ``<function_prefix>-<job_id>``."""
        return function_name(job_id, self._function_prefix)

    def close(self) -> None:
        """Close the pooled connections; the next call opens new ones."""
        for client in (self._api, self._upload, self._invoker):
            client.close()

    # -- primitives, in interface order -------------------------------------------------

    def _invoke(self, job_id: int, payload: bytes) -> InvokeReply:
        content = to_json({"job_id": job_id, "args": list(payload)})
        timeout = self._invoke_timeout(job_id)
        uri = self._uri(job_id)
        response = self._post(uri, content, timeout)
        if response.status_code == 404:
            # A replaced function may have a new URI; a missing one raises NotDeployed here.
            fresh = self._learn_uri(job_id)
            if fresh != uri:
                response = self._post(fresh, content, timeout)
        reply = self._reply(response)
        return InvokeReply(body=reply.result, execution_ms=reply.handler_ms, cold_start=reply.fresh)

    def _deploy_job(self, job_id: int, package: bytes, config: FaasConfig) -> FaasDeployment:
        """Upload the source, create the function or patch it, and wait for the operation.

        An existing function answers create with ``ALREADY_EXISTS``, at once (409) or inside
        the operation; either way the same body is sent again as a PATCH.
        """
        if config.provider_config:
            raise InvalidConfig(
                "the gcp provider takes no provider_config keys, got "
                f"{sorted(config.provider_config)}",
                provider=self.provider_name,
            )
        function = self._function_body(job_id, config, self._upload_source(package))
        function_id = self.function_id(job_id)
        try:
            response = self._api.request(
                "POST",
                f"/v2/{self._parent}/functions",
                params={"functionId": function_id},
                json=function,
            )
            operation = self._await(response, f"the creation of function {function_id}")
        except AlreadyDeployed:
            response = self._api.request(
                "PATCH",
                f"/v2/{function['name']}",
                params={"updateMask": ",".join(field_paths(function))},
                json=function,
            )
            operation = self._await(response, f"the update of function {function_id}")
        described = function_in(operation) or self._get_function(job_id)
        self._remember_uri(job_id, described)
        return self._deployment(job_id, described, len(package))

    def _health_check(self, job_id: int) -> bool:
        try:
            function = self._get_function(job_id)
        except NotDeployed:
            return False
        self._remember_uri(job_id, function)
        return function.state == "ACTIVE"

    def _warm(self, job_id: int, instances: int) -> int:
        """Send ``instances`` warm-up requests at once; return how many were answered.

        Each instance takes one request at a time (``maxInstanceRequestConcurrency`` 1), so
        concurrent warm-ups make the platform start that many instances. Warm capacity that
        outlives the call is ``minInstanceCount``, set at deploy by ``keep_warm``.
        """
        uri = self._uri(job_id)
        content = to_json(WARMUP_REQUEST)
        timeout = self._invoke_timeout(job_id)

        def warm_one(_: int) -> FaasError | None:
            try:
                self._reply(self._post(uri, content, timeout))
            except FaasError as error:
                return error
            return None

        with ThreadPoolExecutor(max_workers=min(instances, _MAX_WARM_THREADS)) as pool:
            errors = list(pool.map(warm_one, range(instances)))
        failed = [error for error in errors if error is not None]
        if len(failed) == instances:
            raise failed[0]
        return instances - len(failed)

    def _get_deployment(self, job_id: int) -> FaasDeployment:
        function = self._get_function(job_id)
        self._remember_uri(job_id, function)
        return self._deployment(job_id, function, None)

    def _undeploy_job(self, job_id: int) -> None:
        self._uris.pop(job_id, None)
        response = self._api.request("DELETE", f"/v2/{self._function_name(job_id)}")
        if response.status_code == 404:
            return
        try:
            self._await(response, f"the deletion of function {self.function_id(job_id)}")
        except NotDeployed:
            # Deleted by someone else while our operation ran: what was asked for holds.
            return

    # -- private helpers ----------------------------------------------------------------

    def _function_name(self, job_id: int) -> str:
        return f"{self._parent}/functions/{self.function_id(job_id)}"

    def _timeout(self, read_s: float) -> httpx.Timeout:
        return httpx.Timeout(
            connect=self._connect_timeout_s,
            read=read_s,
            write=self._control_timeout_s,
            pool=self._control_timeout_s,
        )

    def _invoke_timeout(self, job_id: int) -> httpx.Timeout:
        return self._timeout(self.job_config(job_id).timeout_secs + self._invoke_margin_s)

    def _get_function(self, job_id: int) -> Function:
        response = self._api.request("GET", f"/v2/{self._function_name(job_id)}")
        raise_for_status(response, provider=self.provider_name, error_body=read_nested_error)
        return self._parse(Function, response)

    def _uri(self, job_id: int) -> str:
        return self._uris.get(job_id) or self._learn_uri(job_id)

    def _learn_uri(self, job_id: int) -> str:
        self._uris.pop(job_id, None)
        function = self._get_function(job_id)
        uri = self._remember_uri(job_id, function)
        if uri is None:
            raise NotDeployed(
                f"function {self.function_id(job_id)} has no URI (state {function.state})",
                provider=self.provider_name,
            )
        return uri

    def _remember_uri(self, job_id: int, function: Function) -> str | None:
        uri = function.service_config.uri
        if uri:
            self._uris[job_id] = uri
        return uri

    def _post(self, uri: str, content: bytes, timeout: httpx.Timeout) -> httpx.Response:
        return self._invoker.request(
            "POST", uri, content=content, headers=_JSON_HEADERS, timeout=timeout
        )

    def _reply(self, response: httpx.Response) -> CoreReply:
        """The entry point's reply in ``response``, or the error the response means."""
        # The entry point answers a failed job with 500 and the core's failure reply; a 500
        # without one is the platform's (no instance available), and worth retrying.
        body = json_object_or_none(response.content) if response.status_code in (200, 500) else None
        what = reply_name(response)
        if body is not None and body.get("success") is False:
            failure = validate_reply(CoreReply, body, provider=self.provider_name, what=what)
            raise FunctionError(
                response_message(
                    response, f"job function failed: {failure.error or 'no message given'}"
                ),
                provider=self.provider_name,
                status=response.status_code,
            )
        if response.status_code == 403:
            refused = error_for_response(
                response, provider=self.provider_name, error_body=read_nested_error
            )
            raise AuthError(
                f"{refused.message} ({_INVOKER_ROLE_HINT})",
                provider=self.provider_name,
                status=403,
            )
        raise_for_status(response, provider=self.provider_name, error_body=read_nested_error)
        return validate_reply(CoreReply, body, provider=self.provider_name, what=what)

    def _upload_source(self, package: bytes) -> Mapping[str, Any]:
        """PUT the zip to a fresh signed URL; return the ``storageSource`` that names it."""
        response = self._api.request(
            "POST",
            f"/v2/{self._parent}/functions:generateUploadUrl",
            json={"environment": "GEN_2"},
        )
        raise_for_status(response, provider=self.provider_name, error_body=read_nested_error)
        upload = self._parse(UploadUrl, response)
        stored = self._upload.request(
            "PUT",
            upload.upload_url,
            content=package,
            headers={"Content-Type": "application/zip"},
        )
        if not stored.is_success:
            # Not raise_for_status: a 403 here is a refused signature, not our credentials,
            # and the storage service's XML reply may quote the signed request.
            error_type = (
                TransientInfrastructureError
                if stored.status_code >= 500
                else PermanentInfrastructureError
            )
            raise error_type(
                f"PUT {safe_url(upload.upload_url)}: the signed upload URL refused the source "
                f"with HTTP {stored.status_code}",
                provider=self.provider_name,
                status=stored.status_code,
                retry_after_s=parse_retry_after(stored.headers.get("retry-after"))
                if error_type.retryable
                else None,
            )
        return upload.storage_source

    def _function_body(
        self, job_id: int, config: FaasConfig, source: Mapping[str, Any]
    ) -> dict[str, Any]:
        return {
            "name": self._function_name(job_id),
            "environment": "GEN_2",
            "labels": {"blueprint-faas-job": str(job_id)},
            "buildConfig": {
                "runtime": self._runtime,
                "entryPoint": ENTRY_POINT,
                "source": {"storageSource": dict(source)},
            },
            "serviceConfig": {
                "availableMemory": f"{config.memory_mb}Mi",
                "timeoutSeconds": config.timeout_secs,
                "environmentVariables": dict(config.env_vars),
                "maxInstanceCount": config.max_concurrency or DEFAULT_MAX_INSTANCES,
                "minInstanceCount": 1 if config.keep_warm else 0,
                # One request per instance: the fresh flag and handler_ms are per request.
                "maxInstanceRequestConcurrency": 1,
                "allTrafficOnLatestRevision": True,
            },
        }

    def _await(self, response: httpx.Response, what: str) -> Operation:
        """The finished operation ``response`` started; its error raised as ours."""
        raise_for_status(
            response,
            provider=self.provider_name,
            overrides=_BAD_REQUEST_IS_INVALID_CONFIG,
            error_body=read_nested_error,
        )
        operation = self._parse(Operation, response)
        if not operation.done:
            operation = poll_until(
                lambda: self._poll_operation(operation.name),
                what=what,
                provider=self.provider_name,
                policy=self._poll_policy,
                clock=self._clock,
            )
        if operation.error is not None:
            raise self._operation_error(operation.error, what)
        return operation

    def _poll_operation(self, name: str) -> Operation | Pending:
        response = self._api.request("GET", f"/v2/{name}")
        if response.status_code in _POLL_AGAIN_STATUSES:
            return Pending(
                seen=f"HTTP {response.status_code}",
                retry_after_s=parse_retry_after(response.headers.get("retry-after")),
            )
        raise_for_status(response, provider=self.provider_name, error_body=read_nested_error)
        operation = self._parse(Operation, response)
        return operation if operation.done else Pending(seen=operation.progress())

    def _operation_error(self, status: RpcStatus, what: str) -> FaasError:
        name, error_type = RPC_CODE_ERRORS.get(status.code, ("", PermanentInfrastructureError))
        code = name or f"code {status.code}"
        message = f"{what} failed: [{code}] {status.message or 'no message given'}"
        return error_type(truncate_message(message), provider=self.provider_name)

    def _parse(self, model: type[_Reply], response: httpx.Response) -> _Reply:
        return parse_reply(model, response, provider=self.provider_name)

    def _deployment(
        self, job_id: int, function: Function, package_size_bytes: int | None
    ) -> FaasDeployment:
        service = function.service_config
        return FaasDeployment(
            function_id=self.function_id(job_id),
            job_id=job_id,
            provider=self.provider_name,
            endpoint=service.uri,
            memory_mb=service.available_memory,
            timeout_secs=service.timeout_seconds,
            status=function.state,
            deployed_at=function.update_time,
            package_size_bytes=package_size_bytes,
        )


_Reply = TypeVar("_Reply", bound=BaseModel)


def _audience(request: httpx.Request) -> str:
    """The URI a request is posted to, which is its ID token's audience (``serviceConfig.uri``).

    The URL's own text, which keeps a URI without a path as it is (the parsed path would add
    a "/", and an audience must match exactly); not parsed again, since this runs on every
    invocation.
    """
    url = request.url
    text = str(url)
    return text.split("?", 1)[0] if url.query else text


#: The ``gcp`` provider, found by :func:`providers.registry.provider_spec`.
PROVIDER = ProviderSpec(
    executor=CloudFunctionExecutor,
    options=GcpOptions,
    create=CloudFunctionExecutor.from_options,
    build_package=build_gcp_package,
    price_list="gcp",
    requires=("google.auth", "requests"),
)
