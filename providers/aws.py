"""The executor for AWS Lambda, on boto3.

Functions are zips for Lambda's Python runtimes (:func:`providers.packaging.build_lambda_package`)
invoked synchronously (``RequestResponse``, never ``Event``, which Lambda would retry on its
own) with ``LogType=Tail``, so every invocation's REPORT line gives its real duration, billed
duration, memory and cold start. The original crate got these wrong: it took any update error
for "create", raced configuration updates against code updates, never updated env vars on a
redeploy, ignored ``max_concurrency``, requested no log tail (so never saw a cold start and
billed wall-clock time), dropped the function's error message, answered health with an error
instead of False and could not deploy a package over 50 MB. Each of those is decided here.

botocore is configured once (:func:`botocore_config`): an invoke makes exactly one attempt
with a read timeout above the function's own (the worker owns retries; botocore's default 60 s
read timeout and its retry would run a long function twice), and control-plane calls use
``standard`` retries.

The provider ``aws`` (:data:`PROVIDER`): built from :class:`LambdaOptions` by a settings file,
or constructed in code.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import to_json

from providers._durations import to_seconds
from providers._http import STATUS_ERRORS, parse_retry_after, truncate_message
from providers._lambda_report import LambdaReport, parse_log_tail
from providers._poll import Pending, PollPolicy, poll_until
from providers._pool import DEFAULT_CONNECT_TIMEOUT_S
from providers._replies import CoreReply, OptionalText, json_object_or_none, validate_reply
from providers.base import (
    FUNCTION_NAME_PREFIX,
    FaasConfig,
    FaasDeployment,
    FaasExecutor,
    InvokeReply,
    function_name,
)
from providers.errors import (
    AuthError,
    FaasError,
    FaasTimeout,
    FunctionError,
    InvalidConfig,
    InvocationFailed,
    NotDeployed,
    PayloadTooLarge,
    PermanentInfrastructureError,
    SerializationError,
    Throttled,
    TransientInfrastructureError,
)
from providers.limits import ProviderLimits, limits_over
from providers.options import ProviderOptions, Secret
from providers.packaging import LAMBDA_HANDLER, WARMUP_REQUEST, build_lambda_package
from providers.registry import ProviderSpec

if TYPE_CHECKING:
    from botocore.config import Config

__all__ = [
    "CONTROL_ATTEMPTS",
    "DEFAULT_CONTROL_TIMEOUT_S",
    "DEFAULT_DEPLOY_TIMEOUT_S",
    "DEFAULT_INVOKE_MARGIN_S",
    "DEFAULT_RUNTIME",
    "DIRECT_UPLOAD_MAX_BYTES",
    "ERROR_CODES",
    "LIMITS",
    "PROVIDER",
    "PROVISIONED_ALIAS",
    "LambdaExecutor",
    "LambdaOptions",
    "botocore_config",
]

_MIB = 1024 * 1024
DEFAULT_RUNTIME = "python3.12"
DEFAULT_CONTROL_TIMEOUT_S = 30.0
#: How long a deploy waits for the function to become Active or its update to finish.
DEFAULT_DEPLOY_TIMEOUT_S = 300.0
#: Added to the job's ``timeout_secs`` for the invoke read timeout: Lambda's own timeout
#: answer (``Sandbox.Timedout``, with its REPORT line) arrives before ours fires.
DEFAULT_INVOKE_MARGIN_S = 10.0
#: Attempts (first try included) of a control-plane call under botocore's ``standard`` mode.
CONTROL_ATTEMPTS = 3
#: Zips above this go through the ``s3_bucket`` option: Lambda's direct-upload cap.
DIRECT_UPLOAD_MAX_BYTES = 50 * _MIB
#: The alias a ``keep_warm`` job with provisioned concurrency is invoked through.
PROVISIONED_ALIAS = "blueprint-live"
# Lambda's environments per client: botocore's default of 10 would cap a worker's threads.
_DEFAULT_MAX_POOL_CONNECTIONS = 50
# Function names are [A-Za-z0-9_-]{1,64}: room for "-" and a 10-digit job id.
_MAX_PREFIX_CHARS = 64 - 11
_WAITER_DELAY_S = 1

#: Lambda's documented quotas (https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html).
LIMITS = ProviderLimits(
    min_memory_mb=128,
    max_memory_mb=10_240,
    memory_step_mb=1,
    max_timeout_secs=900,
    # Unzipped, layers included; zips over DIRECT_UPLOAD_MAX_BYTES go through S3.
    max_package_bytes=250 * _MIB,
    # Synchronous invoke: 6 MB each way (a request of 6,291,457 bytes is refused).
    max_request_bytes=6 * _MIB,
    max_response_bytes=6 * _MIB,
    # Reserved concurrency must leave 100 of the account's default 1,000 unreserved.
    max_concurrency=900,
    max_account_concurrency=1_000,
    max_env_total_bytes=4 * 1024,
)


class LambdaOptions(ProviderOptions):
    """The options of an ``aws`` executor: :class:`LambdaExecutor`'s arguments.

    Credentials come from boto3's standard chain (environment, shared files and ``profile``,
    SSO, the instance or task role) unless ``access_key_id`` and ``secret_access_key`` are
    given; those two and ``session_token`` are secrets (``env:NAME`` reads ``$NAME``).
    """

    region: str = Field(pattern=r"^[a-z]{2}(-[a-z]+)+-\d+$")
    role_arn: str = Field(pattern=r"^arn:aws[a-z-]*:iam::\d{12}:role/\S+$")
    function_prefix: str = Field(
        FUNCTION_NAME_PREFIX, pattern=r"^[A-Za-z0-9_-]+$", max_length=_MAX_PREFIX_CHARS
    )
    endpoint_url: str | None = None
    runtime: str = Field(DEFAULT_RUNTIME, pattern=r"^(python3\.\d+|provided\.al2023)$")
    architecture: Literal["x86_64", "arm64"] = "x86_64"
    handler: str = Field(LAMBDA_HANDLER, pattern=r"^\S{1,128}$")
    s3_bucket: str | None = None
    s3_prefix: str = "blueprint-faas/"
    profile: str | None = None
    access_key_id: Secret | None = None
    secret_access_key: Secret | None = None
    session_token: Secret | None = None
    connect_timeout_s: float = Field(DEFAULT_CONNECT_TIMEOUT_S, gt=0)
    control_timeout_s: float = Field(DEFAULT_CONTROL_TIMEOUT_S, gt=0)
    deploy_timeout_s: float = Field(DEFAULT_DEPLOY_TIMEOUT_S, gt=0)
    invoke_margin_s: float = Field(DEFAULT_INVOKE_MARGIN_S, ge=0)
    max_pool_connections: int = Field(_DEFAULT_MAX_POOL_CONNECTIONS, ge=1)
    limits: Annotated[ProviderLimits, BeforeValidator(limits_over(LIMITS))] = LIMITS

    @model_validator(mode="after")
    def _keys_come_in_pairs(self) -> LambdaOptions:
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ValueError("access_key_id and secret_access_key are given together or not at all")
        if self.session_token is not None and self.access_key_id is None:
            raise ValueError("session_token needs access_key_id and secret_access_key")
        return self


#: botocore error code → error kind. A code not listed is read by its HTTP status
#: (:data:`providers._http.STATUS_ERRORS`; other 5xx transient, other 4xx permanent).
ERROR_CODES: Mapping[str, type[FaasError]] = MappingProxyType(
    {
        # Nothing there: the function, its alias or its provisioned concurrency.
        "ResourceNotFoundException": NotDeployed,
        "ProvisionedConcurrencyConfigNotFoundException": NotDeployed,
        # Over capacity or over the API rate: retried after Retry-After.
        "TooManyRequestsException": Throttled,
        "ThrottlingException": Throttled,
        "EC2ThrottledException": Throttled,
        # The invoke request is over the 6 MB cap (the modelled name and the wire's own).
        "RequestTooLargeException": PayloadTooLarge,
        "RequestEntityTooLargeException": PayloadTooLarge,
        "SerializedRequestEntityTooLargeException": PayloadTooLarge,
        # An update in progress, a lost optimistic lock, a platform fault: they pass.
        "ResourceConflictException": TransientInfrastructureError,
        "PreconditionFailedException": TransientInfrastructureError,
        "ResourceNotReadyException": TransientInfrastructureError,
        "SnapStartNotReadyException": TransientInfrastructureError,
        "ServiceException": TransientInfrastructureError,
        "ENILimitReachedException": TransientInfrastructureError,
        "EC2UnexpectedException": TransientInfrastructureError,
        "SubnetIPAddressLimitReachedException": TransientInfrastructureError,
        "EFSIOException": TransientInfrastructureError,
        "EFSMountConnectivityException": TransientInfrastructureError,
        "EFSMountTimeoutException": TransientInfrastructureError,
        # The function's setup is wrong, and stays wrong until someone changes it.
        "EC2AccessDeniedException": PermanentInfrastructureError,
        "InvalidSubnetIDException": PermanentInfrastructureError,
        "InvalidSecurityGroupIDException": PermanentInfrastructureError,
        "InvalidRuntimeException": PermanentInfrastructureError,
        "InvalidZipFileException": PermanentInfrastructureError,
        "KMSAccessDeniedException": PermanentInfrastructureError,
        "KMSDisabledException": PermanentInfrastructureError,
        "KMSInvalidStateException": PermanentInfrastructureError,
        "KMSNotFoundException": PermanentInfrastructureError,
        "EFSMountFailureException": PermanentInfrastructureError,
        "CodeStorageExceededException": PermanentInfrastructureError,
        "RecursiveInvocationException": PermanentInfrastructureError,
        # A parameter Lambda refuses (our validation missed it), or a body it cannot read.
        "InvalidParameterValueException": InvalidConfig,
        "ValidationException": InvalidConfig,
        "NoSuchBucket": InvalidConfig,
        "InvalidRequestContentException": SerializationError,
        "UnsupportedMediaTypeException": SerializationError,
        # Credentials missing, wrong, expired or without the permission.
        "AccessDeniedException": AuthError,
        "AccessDenied": AuthError,
        "UnrecognizedClientException": AuthError,
        "InvalidSignatureException": AuthError,
        "SignatureDoesNotMatch": AuthError,
        "InvalidClientTokenId": AuthError,
        "ExpiredTokenException": AuthError,
        "ExpiredToken": AuthError,
        "MissingAuthenticationTokenException": AuthError,
    }
)

# errorType of a failed invocation that is not the job's own failure.
_FUNCTION_ERROR_TYPES: Mapping[str, type[FaasError]] = MappingProxyType(
    {
        "Sandbox.Timedout": FaasTimeout,
        "Function.ResponseSizeTooLarge": PayloadTooLarge,
    }
)
# The REPORT line's Status of a run Lambda stopped at its timeout.
_TIMEOUT_STATUS = "timeout"


def botocore_config(
    *,
    invoke: bool,
    read_timeout_s: float,
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
    max_pool_connections: int = _DEFAULT_MAX_POOL_CONNECTIONS,
) -> Config:
    """The one botocore configuration of every client an executor builds.

    An invoke client makes exactly one attempt: the worker owns retries, and a retry of a
    read timeout would run the function a second time. Control-plane clients use botocore's
    ``standard`` mode with :data:`CONTROL_ATTEMPTS` attempts (backoff with jitter; throttles
    and 5xx only).
    """
    from botocore.config import Config

    retries: dict[str, Any] = {
        "mode": "standard",
        "total_max_attempts": 1 if invoke else CONTROL_ATTEMPTS,
    }
    return Config(
        connect_timeout=connect_timeout_s,
        read_timeout=read_timeout_s,
        retries=retries,
        max_pool_connections=max_pool_connections,
        tcp_keepalive=True,
    )


class LambdaExecutor(FaasExecutor):
    """Deploys and invokes Blueprint jobs as AWS Lambda functions.

    One instance is meant to be shared by every thread of a worker process: its boto3
    clients are built on first use, once per process (a forked child builds its own).

    Parameters
    ----------
    region:
        The AWS region, e.g. ``eu-west-1``.
    role_arn:
        The execution role every function runs as (it needs at least
        ``AWSLambdaBasicExecutionRole``, for the logs the REPORT line comes from).
    function_prefix:
        Function names are ``<prefix>-<job_id>`` (:func:`providers.base.function_name`).
    endpoint_url:
        Another endpoint for Lambda and S3 (a local emulator such as moto).
    runtime:
        ``python3.x``, or ``provided.al2023`` for a prebuilt ``bootstrap`` that implements the
        Lambda Runtime API.
    architecture:
        ``x86_64`` or ``arm64``; native wheels in the package must match it.
    handler:
        The function's ``Handler``; :data:`~providers.packaging.LAMBDA_HANDLER` for packages
        built by :func:`~providers.packaging.build_lambda_package`.
    s3_bucket, s3_prefix:
        Where packages over 50 MB are uploaded for Lambda to fetch (the bucket must be in
        ``region``); without a bucket such a package is refused.
    profile, access_key_id, secret_access_key, session_token:
        Credentials other than boto3's default chain; the keys are secrets.
    session:
        A ``boto3.Session`` to build clients from instead (tests, or credentials of your own).
    connect_timeout_s, control_timeout_s:
        Connect timeout of every call; read timeout of control-plane calls.
    deploy_timeout_s:
        How long a deploy waits for the function to become Active after each step.
    invoke_margin_s:
        Added to the job's ``timeout_secs`` for an invoke's read timeout.
    max_pool_connections:
        Connections per client: the most invocations one executor runs at once.
    limits:
        What Lambda accepts; :data:`LIMITS` when None.

    Raises
    ------
    ValueError
        A key is given without its pair, or the function prefix makes names Lambda refuses.
    """

    provider_name: ClassVar[str] = "aws"
    default_limits: ClassVar[ProviderLimits] = LIMITS

    def __init__(
        self,
        region: str,
        role_arn: str,
        *,
        function_prefix: str = FUNCTION_NAME_PREFIX,
        endpoint_url: str | None = None,
        runtime: str = DEFAULT_RUNTIME,
        architecture: Literal["x86_64", "arm64"] = "x86_64",
        handler: str = LAMBDA_HANDLER,
        s3_bucket: str | None = None,
        s3_prefix: str = "blueprint-faas/",
        profile: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        session_token: str | None = None,
        session: Any = None,
        connect_timeout_s: float | timedelta = DEFAULT_CONNECT_TIMEOUT_S,
        control_timeout_s: float | timedelta = DEFAULT_CONTROL_TIMEOUT_S,
        deploy_timeout_s: float | timedelta = DEFAULT_DEPLOY_TIMEOUT_S,
        invoke_margin_s: float | timedelta = DEFAULT_INVOKE_MARGIN_S,
        max_pool_connections: int = _DEFAULT_MAX_POOL_CONNECTIONS,
        limits: ProviderLimits | None = None,
    ) -> None:
        super().__init__(limits=limits)
        if (access_key_id is None) != (secret_access_key is None):
            raise ValueError("access_key_id and secret_access_key are given together or not at all")
        if len(function_prefix) > _MAX_PREFIX_CHARS:
            raise ValueError(f"function_prefix is over {_MAX_PREFIX_CHARS} characters")
        self._region = region
        self._role_arn = role_arn
        self._function_prefix = function_prefix
        self._endpoint_url = endpoint_url
        self._runtime = runtime
        self._architecture = architecture
        self._handler = handler
        self._s3_bucket = s3_bucket
        self._s3_prefix = s3_prefix
        self._connect_timeout_s = to_seconds(connect_timeout_s)
        self._control_timeout_s = to_seconds(control_timeout_s)
        self._deploy_timeout_s = to_seconds(deploy_timeout_s)
        self._invoke_margin_s = to_seconds(invoke_margin_s)
        self._max_pool_connections = max_pool_connections
        self._profile = profile
        self._keys = (access_key_id, secret_access_key, session_token)
        self._session = session
        self._clients: dict[tuple[str, float], Any] = {}
        self._process_session: Any = None
        self._clients_pid: int | None = None
        self._clients_lock = threading.Lock()

    @classmethod
    def from_options(cls, options: LambdaOptions) -> Self:
        """The executor ``options`` describe (what a settings file's ``[faas]`` builds)."""

        def revealed(secret: Any) -> str | None:
            return None if secret is None else str(secret.get_secret_value())

        return cls(
            options.region,
            options.role_arn,
            function_prefix=options.function_prefix,
            endpoint_url=options.endpoint_url,
            runtime=options.runtime,
            architecture=options.architecture,
            handler=options.handler,
            s3_bucket=options.s3_bucket,
            s3_prefix=options.s3_prefix,
            profile=options.profile,
            access_key_id=revealed(options.access_key_id),
            secret_access_key=revealed(options.secret_access_key),
            session_token=revealed(options.session_token),
            connect_timeout_s=options.connect_timeout_s,
            control_timeout_s=options.control_timeout_s,
            deploy_timeout_s=options.deploy_timeout_s,
            invoke_margin_s=options.invoke_margin_s,
            max_pool_connections=options.max_pool_connections,
            limits=options.limits,
        )

    def __repr__(self) -> str:
        if self._session is not None:
            credentials = "session"
        elif self._keys[0] is not None:
            credentials = "keys"
        elif self._profile is not None:
            credentials = f"profile {self._profile}"
        else:
            credentials = "default chain"
        return (
            f"LambdaExecutor(region={self._region!r}, function_prefix={self._function_prefix!r}, "
            f"runtime={self._runtime!r}, architecture={self._architecture!r}, "
            f"endpoint_url={self._endpoint_url!r}, credentials={credentials!r})"
        )

    @property
    def region(self) -> str:
        return self._region

    @property
    def architecture(self) -> str:
        """The instruction set functions run on (Lambda prices arm64 lower)."""
        return self._architecture

    def function_id(self, job_id: int) -> str:
        """The Lambda function name of ``job_id``: ``<function_prefix>-<job_id>``."""
        return function_name(job_id, self._function_prefix)

    def close(self) -> None:
        """Drop the clients (and their connection pools); the next call builds new ones."""
        with self._clients_lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()

    # -- primitives, in interface order -------------------------------------------------

    def _invoke(self, job_id: int, payload: bytes) -> InvokeReply:
        return self._run(job_id, to_json({"job_id": job_id, "args": list(payload)}))

    def _deploy_job(self, job_id: int, package: bytes, config: FaasConfig) -> FaasDeployment:
        """Create or update the function, one step at a time, each awaited before the next.

        Only ``ResourceNotFoundException`` from GetFunction leads to a create (or a function
        whose creation failed, which Lambda lets one delete and nothing else). An update
        changes the code, waits for it, then the configuration (so env vars change on every
        redeploy), and waits again, so no update races another.
        """
        provisioned = _provisioned_concurrency(config)
        name = self.function_id(job_id)
        code = self._code(name, package)
        control = self._control()
        settings: dict[str, Any] = {
            "Role": self._role_arn,
            "Runtime": self._runtime,
            "Handler": self._handler,
            "MemorySize": config.memory_mb,
            "Timeout": config.timeout_secs,
            "Environment": {"Variables": dict(config.env_vars)},
        }
        existing = self._get_function(name)
        if existing is not None and existing["Configuration"].get("State") == "Failed":
            # A function whose creation failed cannot be updated, only deleted and created.
            self._undeploy_job(job_id)
            existing = None
        if existing is None:
            with self._mapped("CreateFunction", name):
                control.create_function(
                    FunctionName=name,
                    PackageType="Zip",
                    Code=code,
                    Architectures=[self._architecture],
                    **settings,
                )
            self._wait("function_active_v2", name)
        else:
            with self._mapped("UpdateFunctionCode", name):
                control.update_function_code(
                    FunctionName=name, Architectures=[self._architecture], **code
                )
            self._wait("function_updated_v2", name)
            with self._mapped("UpdateFunctionConfiguration", name):
                control.update_function_configuration(FunctionName=name, **settings)
        self._wait("function_updated_v2", name)
        self._set_reserved_concurrency(name, config.max_concurrency)
        self._set_provisioned_concurrency(name, provisioned)
        return self._describe(job_id, package_size_bytes=len(package))

    def _health_check(self, job_id: int) -> bool:
        name = self.function_id(job_id)
        try:
            with self._mapped("GetFunctionConfiguration", name):
                configuration = self._control().get_function_configuration(FunctionName=name)
        except NotDeployed:
            return False
        return configuration.get("State") == "Active" and (
            configuration.get("LastUpdateStatus") != "Failed"
        )

    def _warm(self, job_id: int, instances: int) -> int:
        """Send ``instances`` warm-up events at once; each busy environment is one more warm.

        Lambda starts an environment for each invocation that finds none idle, so concurrent
        warm-ups start that many. Failures count as not warmed; when none answered, the
        first failure is raised.
        """
        request = to_json(WARMUP_REQUEST)
        workers = min(instances, self._max_pool_connections)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lambda-warm") as pool:
            outcomes = list(pool.map(lambda _: self._warm_one(job_id, request), range(instances)))
        answered = sum(1 for outcome in outcomes if outcome is None)
        if answered == 0:
            raise next(outcome for outcome in outcomes if outcome is not None)
        return answered

    def _get_deployment(self, job_id: int) -> FaasDeployment:
        return self._describe(job_id, package_size_bytes=None)

    def _undeploy_job(self, job_id: int) -> None:
        """Delete the function; its versions, alias, reserved and provisioned concurrency go too."""
        name = self.function_id(job_id)
        try:
            with self._mapped("DeleteFunction", name):
                self._control().delete_function(FunctionName=name)
        except NotDeployed:
            return

    # -- private helpers ----------------------------------------------------------------

    def _run(self, job_id: int, request: bytes) -> InvokeReply:
        name = self.function_id(job_id)
        config = self.job_config(job_id)
        arguments: dict[str, Any] = {
            "FunctionName": name,
            "InvocationType": "RequestResponse",
            "LogType": "Tail",
            "Payload": request,
        }
        if _provisioned_concurrency(config) is not None:
            arguments["Qualifier"] = PROVISIONED_ALIAS
        client = self._client("lambda", config.timeout_secs + self._invoke_margin_s)
        with self._mapped("Invoke", name):
            response = client.invoke(**arguments)
            body = response["Payload"].read()
        report = parse_log_tail(response.get("LogResult"))
        if "FunctionError" in response:
            raise self._function_error(job_id, body, report)
        reply = validate_reply(
            CoreReply, json_object_or_none(body), provider=self.provider_name, what="Invoke reply"
        )
        if reply.success is False:
            raise self._failure(job_id, FunctionError, f"job function failed: {reply.error}")
        if report is None:
            return InvokeReply(
                body=reply.result, execution_ms=reply.handler_ms, cold_start=reply.fresh
            )
        return InvokeReply(
            body=reply.result,
            execution_ms=report.duration_ms,
            cold_start=report.cold_start,
            memory_used_mb=report.max_memory_used_mb,
            billed_ms=report.billed_duration_ms,
        )

    def _warm_one(self, job_id: int, request: bytes) -> FaasError | None:
        try:
            self._run(job_id, request)
        except FaasError as error:
            return error
        return None

    def _function_error(self, job_id: int, body: bytes, report: LambdaReport | None) -> FaasError:
        failure = validate_reply(
            _LambdaErrorBody,
            json_object_or_none(body) or {},
            provider=self.provider_name,
            what="Invoke error",
        )
        error_type = _FUNCTION_ERROR_TYPES.get(failure.error_type or "", FunctionError)
        if report is not None and report.status == _TIMEOUT_STATUS:
            error_type = FaasTimeout
        described = (
            ": ".join(part for part in (failure.error_type, failure.error_message) if part)
            or "no error body"
        )
        return self._failure(job_id, error_type, f"job function failed: {described}", status=200)

    def _failure(
        self, job_id: int, error_type: type[FaasError], text: str, status: int | None = None
    ) -> FaasError:
        # A function may echo its environment (or our keys) in its own error message.
        secrets = [*self.job_config(job_id).env_vars.values(), *self._keys[1:]]
        return error_type(
            truncate_message(_redacted(text, secrets)), provider=self.provider_name, status=status
        )

    def _describe(self, job_id: int, *, package_size_bytes: int | None) -> FaasDeployment:
        name = self.function_id(job_id)
        function = self._get_function(name)
        if function is None:
            raise NotDeployed(f"no Lambda function {name}", provider=self.provider_name, status=404)
        configuration = function["Configuration"]
        status = configuration.get("State", "Active")
        last_update = configuration.get("LastUpdateStatus")
        if last_update not in (None, "Successful"):
            status = f"{status} (last update {last_update})"
        return FaasDeployment(
            function_id=name,
            job_id=job_id,
            provider=self.provider_name,
            endpoint=configuration.get("FunctionArn"),
            memory_mb=configuration["MemorySize"],
            timeout_secs=configuration["Timeout"],
            status=status,
            deployed_at=_last_modified(configuration.get("LastModified")),
            package_size_bytes=configuration.get("CodeSize", package_size_bytes),
        )

    def _get_function(self, name: str) -> dict[str, Any] | None:
        """GetFunction's answer, or None when (and only when) Lambda says there is none."""
        try:
            with self._mapped("GetFunction", name):
                function: dict[str, Any] = self._control().get_function(FunctionName=name)
        except NotDeployed:
            return None
        return function

    def _code(self, name: str, package: bytes) -> dict[str, Any]:
        """The ``Code`` of a create or update: the zip itself, or its copy in S3 when large."""
        if len(package) <= DIRECT_UPLOAD_MAX_BYTES:
            return {"ZipFile": package}
        if self._s3_bucket is None:
            raise InvalidConfig(
                f"the package of {len(package)} bytes is over Lambda's direct upload limit of "
                f"{DIRECT_UPLOAD_MAX_BYTES} bytes: set the s3_bucket option",
                provider=self.provider_name,
            )
        key = f"{self._s3_prefix}{name}/{hashlib.sha256(package).hexdigest()}.zip"
        with self._mapped("PutObject", f"s3://{self._s3_bucket}/{key}"):
            self._client("s3", self._control_timeout_s).put_object(
                Bucket=self._s3_bucket, Key=key, Body=package
            )
        return {"S3Bucket": self._s3_bucket, "S3Key": key}

    def _wait(self, waiter_name: str, name: str, **qualifier: str) -> None:
        """Wait with boto3's own waiter until the function is Active or its update is done."""
        from botocore.exceptions import WaiterError

        waiter = self._control().get_waiter(waiter_name)
        attempts = max(1, math.ceil(self._deploy_timeout_s / _WAITER_DELAY_S))
        with self._mapped(waiter_name, name):
            try:
                waiter.wait(
                    FunctionName=name,
                    WaiterConfig={"Delay": _WAITER_DELAY_S, "MaxAttempts": attempts},
                    **qualifier,
                )
            except WaiterError as error:
                raise self._waiter_error(waiter_name, name, error) from error

    def _waiter_error(self, waiter_name: str, name: str, error: Any) -> FaasError:
        last: dict[str, Any] = error.last_response or {}
        if "Error" in last:
            return self._client_error(last, waiter_name, name)
        # GetFunction nests the configuration; GetFunctionConfiguration is it.
        configuration = last.get("Configuration", last)
        state = configuration.get("State")
        update = configuration.get("LastUpdateStatus")
        seen = f"State={state}, LastUpdateStatus={update}"
        if "Failed" in (state, update):
            reason = configuration.get("StateReasonCode") or configuration.get(
                "LastUpdateStatusReasonCode"
            )
            detail = configuration.get("StateReason") or configuration.get("LastUpdateStatusReason")
            return PermanentInfrastructureError(
                truncate_message(f"{waiter_name} {name}: {seen}: [{reason}] {detail}"),
                provider=self.provider_name,
            )
        return TransientInfrastructureError(
            f"{waiter_name} {name}: gave up after {self._deploy_timeout_s:.0f} s; last seen {seen}",
            provider=self.provider_name,
        )

    def _set_reserved_concurrency(self, name: str, reserved: int | None) -> None:
        control = self._control()
        if reserved is None:
            with self._mapped("DeleteFunctionConcurrency", name):
                control.delete_function_concurrency(FunctionName=name)
            return
        with self._mapped("PutFunctionConcurrency", name):
            control.put_function_concurrency(
                FunctionName=name, ReservedConcurrentExecutions=reserved
            )

    def _set_provisioned_concurrency(self, name: str, provisioned: int | None) -> None:
        """Point the alias at a new version with ``provisioned`` instances, or remove both."""
        control = self._control()
        if provisioned is None:
            self._ignoring_missing(
                "DeleteProvisionedConcurrencyConfig",
                name,
                lambda: control.delete_provisioned_concurrency_config(
                    FunctionName=name, Qualifier=PROVISIONED_ALIAS
                ),
            )
            self._ignoring_missing(
                "DeleteAlias",
                name,
                lambda: control.delete_alias(FunctionName=name, Name=PROVISIONED_ALIAS),
            )
            return
        with self._mapped("PublishVersion", name):
            version = control.publish_version(FunctionName=name)["Version"]
        self._wait("published_version_active", name, Qualifier=version)
        try:
            with self._mapped("UpdateAlias", name):
                control.update_alias(
                    FunctionName=name, Name=PROVISIONED_ALIAS, FunctionVersion=version
                )
        except NotDeployed:
            with self._mapped("CreateAlias", name):
                control.create_alias(
                    FunctionName=name, Name=PROVISIONED_ALIAS, FunctionVersion=version
                )
        with self._mapped("PutProvisionedConcurrencyConfig", name):
            control.put_provisioned_concurrency_config(
                FunctionName=name,
                Qualifier=PROVISIONED_ALIAS,
                ProvisionedConcurrentExecutions=provisioned,
            )
        poll_until(
            lambda: self._provisioned_ready(name),
            what=f"provisioned concurrency of {name}:{PROVISIONED_ALIAS} to be READY",
            provider=self.provider_name,
            policy=PollPolicy(
                timeout_s=self._deploy_timeout_s, first_delay_s=1.0, max_delay_s=10.0
            ),
        )

    def _ignoring_missing(self, action: str, name: str, call: Callable[[], object]) -> None:
        try:
            with self._mapped(action, name):
                call()
        except NotDeployed:
            return

    def _provisioned_ready(self, name: str) -> bool | Pending:
        with self._mapped("GetProvisionedConcurrencyConfig", name):
            answer = self._control().get_provisioned_concurrency_config(
                FunctionName=name, Qualifier=PROVISIONED_ALIAS
            )
        status = answer.get("Status")
        if status == "READY":
            return True
        if status == "FAILED":
            raise PermanentInfrastructureError(
                truncate_message(
                    f"provisioned concurrency of {name} failed: {answer.get('StatusReason')}"
                ),
                provider=self.provider_name,
            )
        return Pending(seen=f"Status={status}")

    def _control(self) -> Any:
        return self._client("lambda", self._control_timeout_s, invoke=False)

    def _client(self, service: str, read_timeout_s: float, *, invoke: bool = True) -> Any:
        """The boto3 client for ``service`` with this read timeout, built once per process.

        An invoke's read timeout follows the job's own timeout, so each distinct one has a
        client (a job's functions all share it).
        """
        key = (service if invoke else f"{service}-control", read_timeout_s)
        pid = os.getpid()
        client = self._clients.get(key)
        if client is not None and self._clients_pid == pid:
            return client
        with self._clients_lock:
            if self._clients_pid != pid:
                # A forked child must not share its parent's connections.
                self._clients, self._clients_pid = {}, pid
                self._process_session = self._boto_session()
            client = self._clients.get(key)
            if client is None:
                client = self._process_session.client(
                    service,
                    region_name=self._region,
                    endpoint_url=self._endpoint_url,
                    config=botocore_config(
                        invoke=invoke and service == "lambda",
                        read_timeout_s=read_timeout_s,
                        connect_timeout_s=self._connect_timeout_s,
                        max_pool_connections=self._max_pool_connections,
                    ),
                )
                self._clients[key] = client
        return client

    def _boto_session(self) -> Any:
        _quiet_botocore_debug()
        if self._session is not None:
            return self._session
        import boto3

        access_key_id, secret_access_key, session_token = self._keys
        return boto3.Session(
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            aws_session_token=session_token,
            profile_name=self._profile,
            region_name=self._region,
        )

    @contextmanager
    def _mapped(self, action: str, target: str) -> Iterator[None]:
        """Translate botocore's errors raised inside the block into FaasError, once."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except ClientError as error:
            raise self._client_error(error.response, action, target) from error
        except BotoCoreError as error:
            kind = next(kind for base, kind in _botocore_errors() if isinstance(error, base))
            message = f"{action} {target}: {type(error).__name__}: {error}"
            raise kind(
                truncate_message(_redacted(message, self._keys[1:])), provider=self.provider_name
            ) from error

    def _client_error(self, response: Mapping[str, Any], action: str, target: str) -> FaasError:
        error = response.get("Error", {})
        code = error.get("Code") or ""
        metadata = response.get("ResponseMetadata", {})
        status = metadata.get("HTTPStatusCode")
        error_type = ERROR_CODES.get(code) or _status_error(status)
        reason = response.get("Reason")
        text = f"{action} {target}: {code or f'HTTP {status}'}"
        text += f" ({reason})" if reason else ""
        text += f": {error.get('Message')}" if error.get("Message") else ""
        retry_after_s = None
        if error_type.retryable:
            headers = metadata.get("HTTPHeaders", {})
            retry_after_s = parse_retry_after(
                headers.get("retry-after") or response.get("retryAfterSeconds")
            )
        return error_type(
            truncate_message(_redacted(text, self._keys[1:])),
            provider=self.provider_name,
            status=status,
            retry_after_s=retry_after_s,
        )


class _LambdaErrorBody(BaseModel):
    """The body of a failed invocation: the Python runtime's ``errorType`` and ``errorMessage``."""

    model_config = ConfigDict(frozen=True)

    error_type: OptionalText = Field(None, alias="errorType")
    error_message: OptionalText = Field(None, alias="errorMessage")


class _JobOptions(ProviderOptions):
    """``FaasConfig.provider_config`` keys the aws provider reads."""

    provisioned_concurrency: int | None = Field(None, ge=1)


def _provisioned_concurrency(config: FaasConfig) -> int | None:
    """The job's provisioned instances; only a ``keep_warm`` job may ask for them."""
    if not config.provider_config:
        return None
    try:
        options = _JobOptions.model_validate(dict(config.provider_config))
    except ValidationError as error:
        fields = sorted({".".join(map(str, detail["loc"])) for detail in error.errors()})
        raise InvalidConfig(
            f"provider_config: the aws provider takes only provisioned_concurrency (an int >= 1); "
            f"refused: {fields}",
            provider="aws",
        ) from None
    if options.provisioned_concurrency is not None and not config.keep_warm:
        raise InvalidConfig(
            "provider_config.provisioned_concurrency needs keep_warm = true", provider="aws"
        )
    return options.provisioned_concurrency


def _quiet_botocore_debug() -> None:
    """Keep botocore's loggers at INFO unless someone set their level on purpose.

    Its DEBUG records quote whole request bodies (payloads, environment variables) and
    headers (session tokens); an application that turns on DEBUG for everything would log
    them.
    """
    botocore_logger = logging.getLogger("botocore")
    if botocore_logger.level == logging.NOTSET:
        botocore_logger.setLevel(logging.INFO)


def _status_error(status: int | None) -> type[FaasError]:
    if status is None:
        return TransientInfrastructureError
    chosen = STATUS_ERRORS.get(status)
    if chosen is not None:
        return chosen
    return TransientInfrastructureError if status >= 500 else PermanentInfrastructureError


def _botocore_errors() -> tuple[tuple[type[Exception], type[FaasError]], ...]:
    # First match wins: ReadTimeoutError and ConnectTimeoutError are also connection errors.
    from botocore import exceptions as boto

    return (
        (boto.ReadTimeoutError, FaasTimeout),
        (boto.ConnectTimeoutError, InvocationFailed),
        (boto.HTTPClientError, InvocationFailed),
        (boto.EndpointConnectionError, InvocationFailed),
        (boto.NoCredentialsError, AuthError),
        (boto.PartialCredentialsError, AuthError),
        (boto.CredentialRetrievalError, AuthError),
        (boto.TokenRetrievalError, AuthError),
        (boto.SSOError, AuthError),
        (boto.ProfileNotFound, InvalidConfig),
        (boto.NoRegionError, InvalidConfig),
        (boto.ParamValidationError, InvalidConfig),
        (boto.BotoCoreError, InvocationFailed),
    )


def _redacted(text: str, secrets: Iterable[str | None]) -> str:
    # Longest first, so a secret inside a longer one leaves no fragment behind.
    for secret in sorted((s for s in secrets if s and len(s) >= 4), key=len, reverse=True):
        text = text.replace(secret, "[redacted]")
    return text


def _last_modified(value: str | None) -> datetime | None:
    # Lambda writes 2019-10-21T18:49:42.452+0000.
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


#: The ``aws`` provider, found by :func:`providers.registry.provider_spec`.
PROVIDER = ProviderSpec(
    executor=LambdaExecutor,
    options=LambdaOptions,
    create=LambdaExecutor.from_options,
    build_package=build_lambda_package,
    price_list="aws",
    requires=("boto3", "botocore"),
)
