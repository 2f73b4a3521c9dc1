"""The executor for Azure Functions on the Flex Consumption plan, driven over ARM.

Each job gets its own function app (and its own Flex plan and deployment container), so a
deploy never replaces another job's code and each job keeps its own memory, timeout and
scale settings. Code goes in by Flex "one deploy" (``POST https://<scm host>/api/publish``);
calls go to ``https://<defaultHostName>/api/blueprint`` with the function's key in
``x-functions-key``, the key fetched once from ARM's ``listkeys`` and cached. Packages come
from :func:`providers.packaging.build_azure_package`.

Every ARM write follows its asynchronous operation (``Azure-AsyncOperation`` or
``Location``, ``Retry-After``, ``provisioningState``) through :mod:`providers._poll`; ARM's
"busy" answers (409 for an operation in progress, 429) are waited out the same way. Host
names are read from ARM, never built from the app's name: new apps may get hashed names.

The provider ``azure`` (:data:`PROVIDER`): built from :class:`AzureOptions` by a settings
file, or constructed in code. Credentials come from azure-identity's
``DefaultAzureCredential`` unless a credential is given.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Annotated, Any, ClassVar, Literal, Protocol, Self

import httpx
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainValidator
from pydantic_core import to_json

from providers._arm import ArmClient, retry_after_s
from providers._auth import BearerTokenAuth, Credential, FunctionKeyAuth
from providers._durations import to_seconds
from providers._http import (
    raise_for_status,
    response_message,
)
from providers._poll import SYSTEM_CLOCK, Clock, Pending, PollPolicy
from providers._pool import DEFAULT_CONNECT_TIMEOUT_S, HttpSettings, PooledClient
from providers._replies import (
    OptionalText,
    json_object_or_none,
    reply_name,
    validate_reply,
)
from providers.base import FaasConfig, FaasDeployment, FaasExecutor, InvokeReply, check_job_id
from providers.errors import (
    AuthError,
    FaasError,
    FunctionError,
    InvalidConfig,
    NotDeployed,
    PermanentInfrastructureError,
    Throttled,
    TransientInfrastructureError,
)
from providers.limits import ProviderLimits, limits_over
from providers.options import ProviderOptions
from providers.packaging import WARMUP_REQUEST, build_azure_package
from providers.packaging.azure import AZURE_FUNCTION_NAME, AZURE_FUNCTION_ROUTE
from providers.packaging.azure import function_timeout_text as _timespan
from providers.registry import ProviderSpec

__all__ = [
    "ARM_BASE_URL",
    "ARM_SCOPE",
    "FLEX_MEMORY_SIZES_MB",
    "HTTP_RESPONSE_CAP_S",
    "LIMITS",
    "PROVIDER",
    "AzureFunctionExecutor",
    "AzureOptions",
]

ARM_BASE_URL = "https://management.azure.com"
#: The token audience of ARM, and of the SCM (deployment) host, which takes ARM tokens.
ARM_SCOPE = "https://management.azure.com/.default"
_RESOURCES_API = "2021-04-01"
_STORAGE_API = "2023-05-01"
# functionAppConfig (Flex) needs 2023-12-01 or later.
_WEB_API = "2024-04-01"
#: The instance sizes Flex Consumption offers; a job's memory_mb is rounded up to one.
FLEX_MEMORY_SIZES_MB = (512, 2048, 4096)
#: An HTTP-triggered function must answer within 230 s (the load balancer's idle timeout),
#: whatever its functionTimeout: every call here is one synchronous HTTP request.
HTTP_RESPONSE_CAP_S = 230
DEFAULT_PYTHON_VERSION = "3.11"
DEFAULT_CONTROL_TIMEOUT_S = 60.0
# A publish uploads the zip (up to the request cap) before it answers.
DEFAULT_DEPLOY_TIMEOUT_S = 300.0
# A site creation plus a deployment: ARM's own operations take minutes.
DEFAULT_OPERATION_TIMEOUT_S = 900.0
DEFAULT_INVOKE_MARGIN_S = 10.0
_DEFAULT_MAX_INSTANCES = 100
_MIB = 1024 * 1024

LIMITS = ProviderLimits(
    max_memory_mb=FLEX_MEMORY_SIZES_MB[-1],
    # functionTimeout is unbounded on Flex; FaasConfig's own ceiling is the real one here.
    max_timeout_secs=3_600,
    max_sync_timeout_secs=HTTP_RESPONSE_CAP_S,
    # "Max request size" of HTTP triggers (the Functions limits table).
    max_request_bytes=100 * _MIB,
    # maximumInstanceCount
    max_concurrency=1_000,
)


class AzureOptions(ProviderOptions):
    """The options of an ``azure`` executor: :class:`AzureFunctionExecutor`'s arguments.

    Credentials are not options: ``DefaultAzureCredential`` reads them from each host's
    environment (``AZURE_CLIENT_ID``/``AZURE_TENANT_ID``/``AZURE_CLIENT_SECRET``, workload or
    managed identity, the Azure CLI's login).
    """

    subscription_id: str = Field(pattern=r"^[0-9A-Za-z-]{1,64}$")
    region: str = Field(pattern=r"^[a-z0-9]{2,40}$")
    resource_group: str | None = Field(None, pattern=r"^[-\w.()]{0,89}[-\w()]$")
    app_prefix: str = Field("blueprint", pattern=r"^[a-z][a-z0-9]{0,11}$")
    storage_account: str | None = Field(None, pattern=r"^[a-z0-9]{3,24}$")
    python_version: str = Field(DEFAULT_PYTHON_VERSION, pattern=r"^3\.[0-9]{1,2}$")
    remote_build: bool = False
    arm_base_url: str = ARM_BASE_URL
    site_scheme: Literal["https", "http"] = "https"
    connect_timeout_s: float = Field(DEFAULT_CONNECT_TIMEOUT_S, gt=0)
    control_timeout_s: float = Field(DEFAULT_CONTROL_TIMEOUT_S, gt=0)
    deploy_timeout_s: float = Field(DEFAULT_DEPLOY_TIMEOUT_S, gt=0)
    operation_timeout_s: float = Field(DEFAULT_OPERATION_TIMEOUT_S, gt=0)
    invoke_margin_s: float = Field(DEFAULT_INVOKE_MARGIN_S, ge=0)
    limits: Annotated[ProviderLimits, BeforeValidator(limits_over(LIMITS))] = LIMITS


# -- error mapping ----------------------------------------------------------------------
#: ARM error codes whose meaning is not their status's. The statuses themselves are
#: :data:`providers._http.STATUS_ERRORS`, with the overrides below.
ARM_CODE_ERRORS: Mapping[str, type[FaasError]] = {
    # 409 and 429 for "another operation is in progress on this resource": wait and resend.
    "AnotherOperationInProgress": TransientInfrastructureError,
    "RetryableErrorDueToAnotherOperation": TransientInfrastructureError,
    "OperationNotAllowed": PermanentInfrastructureError,
    # Names are global: someone else's storage account or app has it.
    "StorageAccountAlreadyTaken": InvalidConfig,
    "AccountNameInvalid": InvalidConfig,
    "LocationNotAvailableForResourceType": InvalidConfig,
    "NoRegisteredProviderFound": InvalidConfig,
    "MissingSubscriptionRegistration": InvalidConfig,
    "SubscriptionNotFound": InvalidConfig,
    "InvalidSubscriptionId": InvalidConfig,
    "AuthorizationFailed": AuthError,
    "InvalidAuthenticationToken": AuthError,
    "ExpiredAuthenticationToken": AuthError,
    "ResourceNotFound": NotDeployed,
    "ResourceGroupNotFound": NotDeployed,
}
# Kudu's DeployStatus: Pending 0, Building 1, Deploying 2, Failed 3, Success 4.
_DEPLOY_FAILED, _DEPLOY_SUCCEEDED = 3, 4
_TIMEOUT_SETTING = "AzureFunctionsJobHost__functionTimeout"
_STORAGE_SETTING = "AzureWebJobsStorage"
_DEPLOYMENT_STORAGE_SETTING = "DEPLOYMENT_STORAGE_CONNECTION_STRING"
_RESERVED_SETTINGS = frozenset({_TIMEOUT_SETTING, _STORAGE_SETTING, _DEPLOYMENT_STORAGE_SETTING})
#: ``FaasConfig.provider_config`` keys this provider reads.
_PROVIDER_CONFIG_KEYS = frozenset({"always_ready_instances", "http_per_instance_concurrency"})
_MAX_WARM_THREADS = 16


class _AccessToken(Protocol):
    @property
    def token(self) -> str: ...

    @property
    def expires_on(self) -> int: ...


class TokenCredential(Protocol):
    """What azure-identity's credentials are: ``get_token(scope)`` → ``AccessToken``."""

    def get_token(self, *scopes: str, **kwargs: Any) -> _AccessToken: ...


class AzureFunctionExecutor(FaasExecutor):
    """Deploys and invokes Blueprint jobs as Azure function apps on Flex Consumption.

    One instance is meant to be shared by every thread of a worker process: it holds two
    pools (ARM and the deployment host with an ARM token; the function hosts with their
    keys), built on first use. Constructing it does no network I/O.

    Parameters
    ----------
    subscription_id, region:
        Where the apps go (``region`` as ARM names it: ``eastus``).
    resource_group:
        The resource group holding every job's resources; ``<app_prefix>-faas-<region>``
        when None. Created if missing; never deleted.
    app_prefix:
        Start of every app name: ``<prefix>-<job_id>-<hash>``, the hash taken over the
        subscription and resource group, so two users' apps never collide; 1-12 lowercase
        letters and digits, which keeps names within the 32 characters a host id uses.
    storage_account:
        The account for the apps' storage and their deployment containers (one container
        per app); derived from the prefix and the same hash when None. Created if missing.
    credential:
        An azure-identity credential; ``DefaultAzureCredential()`` when None, built at the
        first ARM call.
    python_version:
        The Flex runtime's Python version.
    remote_build:
        Publish with ``RemoteBuild=true``, so the platform installs ``requirements.txt``;
        False ships the zip as is (vendor dependencies into ``.python_packages``).
    arm_base_url, site_scheme:
        Where ARM is, and the scheme of the app's hosts (``http`` for a local emulator).
    connect_timeout_s, control_timeout_s, deploy_timeout_s:
        Timeouts of every call, of ARM calls, and of the publish upload.
    operation_timeout_s:
        Deadline of each wait: an ARM operation, a deployment, the function to be listed.
    invoke_margin_s:
        Added to the job's ``timeout_secs`` to make an invoke's read timeout.
    limits, poll_policy, clock, transport:
        What the platform accepts (:data:`LIMITS`); how waits poll; the time source; a
        network transport replacing the real one (tests).

    Raises
    ------
    ValueError
        A name or URL is malformed.
    """

    provider_name: ClassVar[str] = "azure"
    default_limits: ClassVar[ProviderLimits] = LIMITS

    def __init__(
        self,
        subscription_id: str,
        region: str,
        *,
        resource_group: str | None = None,
        app_prefix: str = "blueprint",
        storage_account: str | None = None,
        credential: TokenCredential | None = None,
        python_version: str = DEFAULT_PYTHON_VERSION,
        remote_build: bool = False,
        arm_base_url: str = ARM_BASE_URL,
        site_scheme: Literal["https", "http"] = "https",
        connect_timeout_s: float | timedelta = DEFAULT_CONNECT_TIMEOUT_S,
        control_timeout_s: float | timedelta = DEFAULT_CONTROL_TIMEOUT_S,
        deploy_timeout_s: float | timedelta = DEFAULT_DEPLOY_TIMEOUT_S,
        operation_timeout_s: float | timedelta = DEFAULT_OPERATION_TIMEOUT_S,
        invoke_margin_s: float | timedelta = DEFAULT_INVOKE_MARGIN_S,
        limits: ProviderLimits | None = None,
        poll_policy: PollPolicy | None = None,
        clock: Clock = SYSTEM_CLOCK,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(limits=limits)
        # The options model holds the naming rules; the constructor checks the same ones.
        options = AzureOptions(
            subscription_id=subscription_id,
            region=region,
            resource_group=resource_group,
            app_prefix=app_prefix,
            storage_account=storage_account,
            python_version=python_version,
            site_scheme=site_scheme,
        )
        self._subscription_id = options.subscription_id
        self._region = options.region
        self._resource_group = options.resource_group or f"{app_prefix}-faas-{region}"
        self._app_prefix = options.app_prefix
        self._scope_hash = hashlib.sha256(
            f"{subscription_id.lower()}/{self._resource_group.lower()}".encode()
        ).hexdigest()
        self._storage_account = options.storage_account or (
            app_prefix + self._scope_hash[: 24 - len(app_prefix)]
        )
        self._python_version = options.python_version
        self._remote_build = remote_build
        self._site_scheme = options.site_scheme
        self._credential = credential
        self._credential_lock = threading.Lock()
        self._connect_timeout_s = to_seconds(connect_timeout_s)
        self._control_timeout_s = to_seconds(control_timeout_s)
        self._deploy_timeout_s = to_seconds(deploy_timeout_s)
        self._invoke_margin_s = to_seconds(invoke_margin_s)
        # Job id -> the app's function host, and host -> app (the key cache is per host).
        self._hosts: dict[int, str] = {}
        self._apps_by_host: dict[str, str] = {}
        self._hosts_lock = threading.Lock()
        self._arm_http = PooledClient(
            HttpSettings(
                base_url=_absolute_url(arm_base_url).rstrip("/"),
                timeout=self._timeout(self._control_timeout_s),
                auth=BearerTokenAuth(self._arm_token, provider=self.provider_name),
            ),
            provider=self.provider_name,
            transport=transport,
        )
        self._arm = ArmClient(
            self._arm_http,
            provider=self.provider_name,
            code_errors=ARM_CODE_ERRORS,
            policy=poll_policy or PollPolicy(timeout_s=to_seconds(operation_timeout_s)),
            clock=clock,
        )
        self._calls = PooledClient(
            HttpSettings(
                timeout=self._timeout(self._control_timeout_s),
                auth=FunctionKeyAuth(
                    self._function_key, provider=self.provider_name, function_of=_host_of
                ),
            ),
            provider=self.provider_name,
            transport=transport,
        )

    @classmethod
    def from_options(cls, options: AzureOptions) -> Self:
        """The executor ``options`` describe (what a settings file's ``[faas]`` builds)."""
        return cls(
            options.subscription_id,
            options.region,
            resource_group=options.resource_group,
            app_prefix=options.app_prefix,
            storage_account=options.storage_account,
            python_version=options.python_version,
            remote_build=options.remote_build,
            arm_base_url=options.arm_base_url,
            site_scheme=options.site_scheme,
            connect_timeout_s=options.connect_timeout_s,
            control_timeout_s=options.control_timeout_s,
            deploy_timeout_s=options.deploy_timeout_s,
            operation_timeout_s=options.operation_timeout_s,
            invoke_margin_s=options.invoke_margin_s,
            limits=options.limits,
        )

    def __repr__(self) -> str:
        return (
            f"AzureFunctionExecutor(subscription_id={self._subscription_id!r}, "
            f"region={self._region!r}, resource_group={self._resource_group!r}, "
            f"app_prefix={self._app_prefix!r}, storage_account={self._storage_account!r})"
        )

    @property
    def region(self) -> str:
        return self._region

    @property
    def resource_group(self) -> str:
        return self._resource_group

    def app_name(self, job_id: int) -> str:
        """The function app of ``job_id``: ``<app_prefix>-<job_id>-<hash of sub and group>``."""
        return f"{self._app_prefix}-{check_job_id(job_id)}-{self._scope_hash[:8]}"

    def close(self) -> None:
        """Close the pooled connections; the next call opens new ones."""
        self._arm_http.close()
        self._calls.close()

    # -- primitives, in interface order -------------------------------------------------

    def _invoke(self, job_id: int, payload: bytes) -> InvokeReply:
        response = self._calls.request(
            "POST",
            self._function_url(job_id),
            content=to_json({"job_id": job_id, "args": list(payload)}),
            headers={"Content-Type": "application/json"},
            timeout=self._timeout(self.job_config(job_id).timeout_secs + self._invoke_margin_s),
        )
        # The entry point answers a handler failure with 500 and success: false; the host's
        # own failures (500 without that body, 429, 404) go through the status table.
        body = json_object_or_none(response.content) if response.status_code in (200, 500) else None
        if body is not None and body.get("success") is False:
            failure = validate_reply(
                _FailureBody, body, provider=self.provider_name, what=reply_name(response)
            )
            raise FunctionError(
                response_message(response, f"job function failed: {failure.error or 'unknown'}"),
                provider=self.provider_name,
                status=response.status_code,
            )
        raise_for_status(response, provider=self.provider_name)
        reply = validate_reply(
            _InvokeReplyBody, body, provider=self.provider_name, what=reply_name(response)
        )
        return InvokeReply(body=reply.result, execution_ms=reply.handler_ms, cold_start=reply.fresh)

    def _deploy_job(self, job_id: int, package: bytes, config: FaasConfig) -> FaasDeployment:
        """Ensure the group, storage, plan and app; publish the zip; wait until it is listed."""
        scale = _scale_and_concurrency(config)
        if reserved := sorted(_RESERVED_SETTINGS & set(config.env_vars)):
            raise InvalidConfig(
                f"env_vars may not set {reserved}: the executor sets them",
                provider=self.provider_name,
            )
        app = self.app_name(job_id)
        self._ensure_resource_group()
        storage = self._ensure_storage_account()
        self._arm.write("PUT", storage.container_path(app), _STORAGE_API, {"properties": {}})
        if self._read_site(app) is None:
            self._check_name_available(app)
        settings = {
            **config.env_vars,
            _STORAGE_SETTING: storage.connection_string,
            _DEPLOYMENT_STORAGE_SETTING: storage.connection_string,
            _TIMEOUT_SETTING: _timespan(config.timeout_secs),
        }
        site = self._put_site(app, self._put_plan(app), storage, scale, settings)
        self._publish(site, package)
        self._wait_for_function(app)
        self._remember_host(job_id, app, site)
        return self._deployment(job_id, site, config.timeout_secs, len(package))

    def _health_check(self, job_id: int) -> bool:
        app = self.app_name(job_id)
        site = self._read_site(app)
        if site is None or site.properties.state != "Running":
            return False
        if not self._function_listed(app):
            return False
        self._remember_host(job_id, app, site)
        try:
            return self._warm_one(job_id)
        except (NotDeployed, FunctionError, TransientInfrastructureError, Throttled):
            return False

    def _warm(self, job_id: int, instances: int) -> int:
        """``instances`` concurrent warm-ups; always-ready instances are the deploy's to ask."""
        self._function_url(job_id)  # resolve the host once, not once per thread
        with ThreadPoolExecutor(max_workers=min(instances, _MAX_WARM_THREADS)) as pool:
            answered = list(pool.map(lambda _: self._warm_one(job_id), range(instances)))
        return sum(answered)

    def _get_deployment(self, job_id: int) -> FaasDeployment:
        app = self.app_name(job_id)
        site = self._read_site(app)
        if site is None:
            raise NotDeployed(
                f"no function app {app} for job {job_id}", provider=self.provider_name
            )
        settings = self._arm.write(
            "POST", f"{self._site_path(app)}/config/appsettings/list", _WEB_API, None
        )
        parsed = self._arm.validate(_AppSettings, settings, "app settings")
        timeout = parsed.properties.get(_TIMEOUT_SETTING)
        timeout_secs = _timespan_seconds(timeout) if timeout else 0
        self._remember_host(job_id, app, site)
        return self._deployment(job_id, site, timeout_secs, None)

    def _undeploy_job(self, job_id: int) -> None:
        """Delete the app, its deployment container, and its plan once it holds no app."""
        app = self.app_name(job_id)
        self._arm.delete(self._site_path(app), _WEB_API)
        self._arm.delete(
            f"{self._storage_path()}/blobServices/default/containers/{_container_name(app)}",
            _STORAGE_API,
        )
        plan = self._arm.get(self._plan_path(app), _WEB_API)
        if plan is not None:
            farm = self._arm.validate(_Plan, plan, "plan")
            if not farm.properties.numberOfSites:
                self._arm.delete(self._plan_path(app), _WEB_API)
        with self._hosts_lock:
            host = self._hosts.pop(job_id, None)
            self._apps_by_host.pop(host or "", None)

    # -- private helpers: ARM -----------------------------------------------------------

    def _arm_token(self) -> Credential:
        with self._credential_lock:
            if self._credential is None:
                from azure.identity import DefaultAzureCredential

                self._credential = DefaultAzureCredential()
            credential = self._credential
        token = credential.get_token(ARM_SCOPE)
        return token.token, float(token.expires_on)

    def _ensure_resource_group(self) -> None:
        path = f"/subscriptions/{self._subscription_id}/resourcegroups/{self._resource_group}"
        if self._arm.get(path, _RESOURCES_API) is None:
            self._arm.write("PUT", path, _RESOURCES_API, {"location": self._region})

    def _ensure_storage_account(self) -> _StorageAccount:
        path = self._storage_path()
        account = self._arm.get(path, _STORAGE_API)
        if account is None:
            account = self._arm.write(
                "PUT",
                path,
                _STORAGE_API,
                {
                    "location": self._region,
                    "sku": {"name": "Standard_LRS"},
                    "kind": "StorageV2",
                    "properties": {"minimumTlsVersion": "TLS1_2", "allowBlobPublicAccess": False},
                },
            )
        blob = self._arm.validate(_StorageBody, account, "storage account")
        keys = self._arm.validate(
            _StorageKeys,
            self._arm.write("POST", f"{path}/listKeys", _STORAGE_API, None),
            "storage keys",
        )
        if not keys.keys:
            raise PermanentInfrastructureError(
                f"storage account {self._storage_account} lists no keys",
                provider=self.provider_name,
            )
        endpoint = blob.properties.primaryEndpoints.blob
        # The endpoint's own suffix: core.windows.net in the public cloud, another elsewhere.
        suffix = httpx.URL(endpoint).host.partition(".blob.")[2]
        connection = (
            f"DefaultEndpointsProtocol=https;AccountName={self._storage_account};"
            f"AccountKey={keys.keys[0].value};EndpointSuffix={suffix}"
        )
        return _StorageAccount(path=path, blob_endpoint=endpoint, connection_string=connection)

    def _put_plan(self, app: str) -> str:
        """The app's own Flex plan (Flex holds one app per plan); its resource id."""
        body = {
            "location": self._region,
            "kind": "functionapp",
            "sku": {"tier": "FlexConsumption", "name": "FC1"},
            "properties": {"reserved": True},
        }
        plan = self._arm.write("PUT", self._plan_path(app), _WEB_API, body)
        return self._arm.validate(_Resource, plan, "plan").id

    def _put_site(
        self,
        app: str,
        plan_id: str,
        storage: _StorageAccount,
        scale: dict[str, Any],
        settings: Mapping[str, str],
    ) -> _Site:
        body = {
            "location": self._region,
            "kind": "functionapp,linux",
            "properties": {
                "serverFarmId": plan_id,
                "httpsOnly": True,
                "functionAppConfig": {
                    "deployment": _deployment_storage(storage.blob_endpoint, _container_name(app)),
                    "runtime": {"name": "python", "version": self._python_version},
                    "scaleAndConcurrency": scale,
                },
                "siteConfig": {
                    "appSettings": [{"name": k, "value": v} for k, v in settings.items()]
                },
            },
        }
        site = self._arm.write("PUT", self._site_path(app), _WEB_API, body)
        return self._arm.validate(_Site, site, "site")

    def _check_name_available(self, app: str) -> None:
        answer = self._arm.write(
            "POST",
            f"/subscriptions/{self._subscription_id}/providers/Microsoft.Web/checknameavailability",
            _WEB_API,
            {"name": app, "type": "Microsoft.Web/sites"},
        )
        parsed = self._arm.validate(_NameAvailability, answer, "name availability")
        if not parsed.nameAvailable:
            raise InvalidConfig(
                f"the app name {app} is taken ({parsed.reason or 'unavailable'}): choose "
                "another app_prefix or resource_group",
                provider=self.provider_name,
            )

    # -- private helpers: publishing and the app's host ----------------------------------

    def _publish(self, site: _Site, package: bytes) -> None:
        """One deploy to the SCM host, then wait for Kudu to report the deployment's end."""
        scm = self._scm_base(site)
        self._arm.request(
            "POST",
            f"{scm}/api/publish",
            None,
            params={"RemoteBuild": str(self._remote_build).lower()},
            content=package,
            headers={"Content-Type": "application/zip"},
            timeout=self._timeout(self._deploy_timeout_s),
        )
        self._arm.poll(lambda: self._deployment_step(scm), "the deployment to finish")

    def _deployment_step(self, scm: str) -> bool | Pending:
        response = self._arm.request("GET", f"{scm}/api/deployments/latest", None, missing_ok=True)
        if response.status_code in (202, 404) or not response.content:
            return Pending(
                f"HTTP {response.status_code}",
                retry_after_s(response),
            )
        deployment = self._arm.parse(_KuduDeployment, response)
        if deployment.status == _DEPLOY_FAILED:
            raise PermanentInfrastructureError(
                response_message(response, f"the deployment failed: {deployment.status_text}"),
                provider=self.provider_name,
            )
        if deployment.status != _DEPLOY_SUCCEEDED:
            return Pending(
                f"deployment status {deployment.status}",
                retry_after_s(response),
            )
        return True

    def _wait_for_function(self, app: str) -> None:
        self._arm.poll(
            lambda: True if self._function_listed(app) else Pending("not listed"),
            f"function {AZURE_FUNCTION_NAME} of {app} to be listed",
        )

    def _function_listed(self, app: str) -> bool:
        listing = self._arm.get(f"{self._site_path(app)}/functions", _WEB_API)
        if listing is None:
            return False
        parsed = self._arm.validate(_Functions, listing, "functions")
        return any(fn.name.rsplit("/", 1)[-1] == AZURE_FUNCTION_NAME for fn in parsed.value)

    def _function_key(self, host: str) -> Credential:
        """The function's ``default`` key, asked of ARM again until the host has made it."""
        with self._hosts_lock:
            app = self._apps_by_host.get(host)
        if app is None:
            raise NotDeployed(f"no function app serves {host}", provider=self.provider_name)
        path = f"{self._site_path(app)}/functions/{AZURE_FUNCTION_NAME}/listkeys"

        def step() -> str | Pending:
            response = self._arm.request("POST", path, _WEB_API, None, missing_ok=True)
            if response.status_code == 404 and self._read_site(app) is None:
                raise NotDeployed(f"function app {app} is gone", provider=self.provider_name)
            keys = json_object_or_none(response.content) or {}
            # The wire is flat ({"default": ...}) though the spec wraps it in "properties".
            found = keys.get("default") or (keys.get("properties") or {}).get("default")
            return found if isinstance(found, str) and found else Pending("no key yet")

        return self._arm.poll(step, f"the key of function {AZURE_FUNCTION_NAME} of {app}"), None

    def _function_url(self, job_id: int) -> str:
        with self._hosts_lock:
            host = self._hosts.get(job_id)
        if host is None:
            app = self.app_name(job_id)
            site = self._read_site(app)
            if site is None:
                raise NotDeployed(
                    f"no function app {app} for job {job_id}", provider=self.provider_name
                )
            host = self._remember_host(job_id, app, site)
        return f"{self._site_scheme}://{host}/api/{AZURE_FUNCTION_ROUTE}"

    def _warm_one(self, job_id: int) -> bool:
        response = self._calls.request(
            "POST",
            self._function_url(job_id),
            content=to_json(WARMUP_REQUEST),
            headers={"Content-Type": "application/json"},
        )
        raise_for_status(response, provider=self.provider_name)
        body = json_object_or_none(response.content) or {}
        return body.get("warmup") is True

    def _remember_host(self, job_id: int, app: str, site: _Site) -> str:
        host = site.properties.defaultHostName
        with self._hosts_lock:
            self._hosts[job_id] = host
            self._apps_by_host[host] = app
        return host

    def _read_site(self, app: str) -> _Site | None:
        site = self._arm.get(self._site_path(app), _WEB_API)
        return None if site is None else self._arm.validate(_Site, site, "site")

    def _scm_base(self, site: _Site) -> str:
        for state in site.properties.hostNameSslStates:
            if state.hostType == "Repository":
                return f"{self._site_scheme}://{state.name}"
        raise PermanentInfrastructureError(
            "the function app lists no deployment (Repository) host", provider=self.provider_name
        )

    def _deployment(
        self, job_id: int, site: _Site, timeout_secs: int, package_size_bytes: int | None
    ) -> FaasDeployment:
        scale = site.properties.functionAppConfig.scaleAndConcurrency
        return FaasDeployment(
            function_id=site.name,
            job_id=job_id,
            provider=self.provider_name,
            endpoint=(
                f"{self._site_scheme}://{site.properties.defaultHostName}"
                f"/api/{AZURE_FUNCTION_ROUTE}"
            ),
            memory_mb=scale.instanceMemoryMB,
            timeout_secs=timeout_secs,
            status=site.properties.state or "unknown",
            package_size_bytes=package_size_bytes,
        )

    # -- private helpers: small ones -----------------------------------------------------

    def _storage_path(self) -> str:
        return (
            f"{self._group_path()}/providers/Microsoft.Storage/storageAccounts/"
            f"{self._storage_account}"
        )

    def _site_path(self, app: str) -> str:
        return f"{self._group_path()}/providers/Microsoft.Web/sites/{app}"

    def _plan_path(self, app: str) -> str:
        return f"{self._group_path()}/providers/Microsoft.Web/serverfarms/{app}-plan"

    def _group_path(self) -> str:
        return f"/subscriptions/{self._subscription_id}/resourceGroups/{self._resource_group}"

    def _timeout(self, read_s: float) -> httpx.Timeout:
        return httpx.Timeout(
            connect=self._connect_timeout_s,
            read=read_s,
            write=self._control_timeout_s,
            pool=self._control_timeout_s,
        )


def _byte_array(value: object) -> bytes:
    if not isinstance(value, list):
        raise ValueError("must be an array of 0..255")
    try:
        return bytes(value)
    except (TypeError, ValueError):
        raise ValueError("is not an array of 0..255") from None


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class _InvokeReplyBody(_Frozen):
    """The entry point's reply: the handler core's, with ``fresh`` and ``handler_ms``."""

    model_config = ConfigDict(frozen=True, strict=True)

    result: Annotated[bytes, PlainValidator(_byte_array)]
    fresh: bool | None = None
    handler_ms: float | None = None


class _FailureBody(_Frozen):
    error: OptionalText = None


class _HostNameSslState(_Frozen):
    name: str
    hostType: str | None = None


class _ScaleAndConcurrency(_Frozen):
    instanceMemoryMB: int
    maximumInstanceCount: int | None = None


class _FunctionAppConfig(_Frozen):
    scaleAndConcurrency: _ScaleAndConcurrency


class _SiteProperties(_Frozen):
    state: str | None = None
    defaultHostName: str
    hostNameSslStates: tuple[_HostNameSslState, ...] = ()
    functionAppConfig: _FunctionAppConfig


class _Site(_Frozen):
    name: str
    properties: _SiteProperties


class _PlanProperties(_Frozen):
    numberOfSites: int | None = None


class _Plan(_Frozen):
    properties: _PlanProperties


class _Endpoints(_Frozen):
    blob: str


class _StorageProperties(_Frozen):
    primaryEndpoints: _Endpoints


class _StorageBody(_Frozen):
    properties: _StorageProperties


class _StorageKey(_Frozen):
    keyName: str | None = None
    value: str


class _StorageKeys(_Frozen):
    keys: tuple[_StorageKey, ...] = ()


class _NameAvailability(_Frozen):
    nameAvailable: bool
    reason: OptionalText = None


class _FunctionEnvelope(_Frozen):
    name: str


class _Functions(_Frozen):
    value: tuple[_FunctionEnvelope, ...] = ()


class _AppSettings(_Frozen):
    properties: dict[str, str] = Field(default_factory=dict)


class _KuduDeployment(_Frozen):
    status: int
    status_text: OptionalText = None


class _Resource(_Frozen):
    id: str


class _StorageAccount(_Frozen):
    """The shared account: where it is, its blob endpoint, how apps reach it (a secret)."""

    path: str
    blob_endpoint: str
    connection_string: str = Field(repr=False)

    def container_path(self, app: str) -> str:
        return f"{self.path}/blobServices/default/containers/{_container_name(app)}"


def _scale_and_concurrency(config: FaasConfig) -> dict[str, Any]:
    """``functionAppConfig.scaleAndConcurrency`` for ``config``.

    Raises
    ------
    InvalidConfig
        ``provider_config`` has a key this provider does not read, or a bad value.
    """
    unknown = sorted(set(config.provider_config) - _PROVIDER_CONFIG_KEYS)
    if unknown:
        raise InvalidConfig(
            f"unknown provider_config keys {unknown}; azure reads {sorted(_PROVIDER_CONFIG_KEYS)}",
            provider=AzureFunctionExecutor.provider_name,
        )
    memory_mb = next(size for size in FLEX_MEMORY_SIZES_MB if size >= config.memory_mb)
    scale: dict[str, Any] = {
        "instanceMemoryMB": memory_mb,
        "maximumInstanceCount": config.max_concurrency or _DEFAULT_MAX_INSTANCES,
    }
    always_ready = config.provider_config.get("always_ready_instances", int(config.keep_warm))
    concurrency = config.provider_config.get("http_per_instance_concurrency")
    for name, value in (
        ("always_ready_instances", always_ready),
        ("http_per_instance_concurrency", concurrency),
    ):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 0
        ):
            raise InvalidConfig(
                f"provider_config.{name} must be a non-negative integer",
                provider=AzureFunctionExecutor.provider_name,
            )
    if always_ready:
        scale["alwaysReady"] = [{"name": "http", "instanceCount": always_ready}]
    if concurrency:
        scale["triggers"] = {"http": {"perInstanceConcurrency": concurrency}}
    return scale


def _deployment_storage(blob_endpoint: str, container: str) -> dict[str, Any]:
    """``functionAppConfig.deployment``: the app's container, reached with the account key."""
    return {
        "storage": {
            "type": "blobContainer",
            "value": f"{blob_endpoint.rstrip('/')}/{container}",
            "authentication": {
                "type": "StorageAccountConnectionString",
                "storageAccountConnectionStringName": _DEPLOYMENT_STORAGE_SETTING,
            },
        }
    }


def _container_name(app: str) -> str:
    # Container names: 3-63 lowercase letters, digits and hyphens; an app name is all three.
    return f"app-package-{app}"


def _timespan_seconds(text: str) -> int:
    hours, minutes, seconds = (int(part) for part in text.split(":"))
    return hours * 3600 + minutes * 60 + seconds


def _host_of(request: httpx.Request) -> str:
    # One key per app, and an app per host (with its port, for a local host).
    return request.url.netloc.decode("ascii")


def _absolute_url(url: str) -> str:
    parsed = httpx.URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError("the URL must be absolute, with an http or https scheme")
    return url


#: The ``azure`` provider, found by :func:`providers.registry.provider_spec`.
PROVIDER = ProviderSpec(
    executor=AzureFunctionExecutor,
    options=AzureOptions,
    create=AzureFunctionExecutor.from_options,
    build_package=build_azure_package,
    price_list="azure",
    requires=("azure.identity",),
)
