"""Azure Resource Manager's wire: calls that wait out "busy", and long-running operations.

ARM answers a write with 200/201 and the resource, or with 201/202 and an operation to poll:
``Azure-AsyncOperation`` (a status resource: ``InProgress`` until ``Succeeded``, ``Failed``
or ``Canceled``, with ``error {code, message}``) or, failing that, ``Location`` (202 until
done), each with a ``Retry-After``. A resource may also come back with a
``provisioningState`` still moving. ARM says "busy" with 409 (another operation on the
resource is in progress) or 429 (its token buckets are empty, ``x-ms-ratelimit-remaining-*``
headers), both with ``Retry-After``: those are asked again, up to the deadline. Everything
waits through :func:`providers._poll.poll_until`, so there is no fixed sleep here.

The provider module owns what ARM's error codes mean (its mapping table); this module reads
``{"error": {"code", "message"}}`` and applies it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict

from providers._http import (
    error_for_response,
    parse_retry_after,
    read_nested_error,
    safe_url,
    truncate_message,
)
from providers._poll import Clock, Pending, PollPolicy, poll_until
from providers._pool import PooledClient
from providers._replies import (
    OptionalText,
    json_object_or_none,
    parse_reply,
    reply_name,
    validate_reply,
)
from providers.errors import (
    FaasError,
    InvalidConfig,
    PermanentInfrastructureError,
    TransientInfrastructureError,
)

__all__ = ["ArmClient", "CodeErrors", "retry_after_s"]

#: ARM error code → error kind, replacing what the status alone would mean.
CodeErrors = Mapping[str, type[FaasError]]

Result = TypeVar("Result")
Reply = TypeVar("Reply", bound=BaseModel)

# ARM's 409 means "in progress" far more often than "exists" (a PUT creates or updates).
_OVERRIDES: Mapping[int, type[FaasError]] = {409: TransientInfrastructureError}
# A write's 400 is ARM refusing what was asked: the job's config or the executor's options.
_WRITE_OVERRIDES: Mapping[int, type[FaasError]] = {**_OVERRIDES, 400: InvalidConfig}
_BUSY_STATUSES = frozenset({409, 429})
_TERMINAL_STATES = frozenset({"Succeeded", "Failed", "Canceled"})


class ArmClient:
    """ARM calls for one executor, over its pool (which holds the bearer-token flow).

    Parameters
    ----------
    http:
        The pool, its base URL ARM's; absolute URLs (status URLs, a Kudu host) go as they are.
    provider:
        ``provider_name`` put on the errors raised.
    code_errors:
        The provider's table of ARM error codes.
    policy, clock:
        How every wait polls, and its time source.
    """

    def __init__(
        self,
        http: PooledClient,
        *,
        provider: str,
        code_errors: CodeErrors,
        policy: PollPolicy,
        clock: Clock,
    ) -> None:
        self._http = http
        self._provider = provider
        self._code_errors = code_errors
        self._policy = policy
        self._clock = clock

    def request(
        self,
        method: str,
        url: str,
        api_version: str | None,
        body: object | None = None,
        *,
        missing_ok: bool = False,
        **kwargs: Any,
    ) -> httpx.Response:
        """One call, sent again while the server says it is busy (409, 429).

        Returns the 2xx response, or the 404 one when ``missing_ok``.

        Raises
        ------
        FaasError
            The mapped error of any other answer (ARM's code and message in its text), or a
            :class:`~providers.errors.FaasTimeout` when still busy at the deadline.
        """
        params = {
            **({"api-version": api_version} if api_version else {}),
            **kwargs.pop("params", {}),
        }
        if body is not None:
            kwargs["json"] = body

        def step() -> httpx.Response | Pending:
            response = self._http.request(method, url, params=params, **kwargs)
            if response.is_success or (missing_ok and response.status_code == 404):
                return response
            error = self._error(response, write=method != "GET")
            if error.retryable and response.status_code in _BUSY_STATUSES:
                return Pending(f"HTTP {response.status_code}", error.retry_after_s)
            raise error from httpx.HTTPStatusError(
                f"HTTP {response.status_code}", request=response.request, response=response
            )

        return self.poll(step, f"{method} {safe_url(url)} to be accepted")

    def get(self, path: str, api_version: str) -> dict[str, Any] | None:
        """The resource at ``path``, or None when ARM says there is none."""
        response = self.request("GET", path, api_version, missing_ok=True)
        return None if response.status_code == 404 else self.json_object(response)

    def write(
        self, method: str, path: str, api_version: str, body: object | None
    ) -> dict[str, Any]:
        """A PUT (the resource, once provisioned) or a POST (its answer), operation awaited."""
        response = self.request(method, path, api_version, body)
        self._await_operation(response)
        if method == "PUT":
            return self._await_provisioned(path, api_version, response)
        return self.json_object(response) if response.content else {}

    def delete(self, path: str, api_version: str) -> None:
        """Delete ``path`` and wait for it; a resource already gone is not an error."""
        response = self.request("DELETE", path, api_version, missing_ok=True)
        if response.status_code != 404:
            self._await_operation(response)

    def poll(self, step: Callable[[], Result | Pending], what: str) -> Result:
        """:func:`~providers._poll.poll_until` with this client's policy and clock."""
        return poll_until(
            step, what=what, provider=self._provider, policy=self._policy, clock=self._clock
        )

    def parse(self, model: type[Reply], response: httpx.Response) -> Reply:
        return parse_reply(model, response, provider=self._provider)

    def validate(self, model: type[Reply], body: object, what: str) -> Reply:
        return validate_reply(model, body, provider=self._provider, what=what)

    def json_object(self, response: httpx.Response) -> dict[str, Any]:
        body = json_object_or_none(response.content)
        if body is None:
            raise PermanentInfrastructureError(
                f"{reply_name(response)} from ARM is not a JSON object", provider=self._provider
            )
        return body

    def _error(self, response: httpx.Response, *, write: bool) -> FaasError:
        detail = read_nested_error(json_object_or_none(response.content))
        overrides = dict(_WRITE_OVERRIDES if write else _OVERRIDES)
        if detail is not None and detail.code is not None and detail.code in self._code_errors:
            overrides[response.status_code] = self._code_errors[detail.code]
        return error_for_response(
            response, provider=self._provider, overrides=overrides, error_body=read_nested_error
        )

    def _await_operation(self, response: httpx.Response) -> None:
        """Follow a 201/202's ``Azure-AsyncOperation`` (preferred) or ``Location`` to its end."""
        if response.status_code not in (201, 202):
            return
        status_url = response.headers.get("azure-asyncoperation")
        if status_url:
            self.poll(lambda: self._operation_step(status_url), "an ARM operation to finish")
            return
        location = response.headers.get("location")
        if location and response.status_code == 202:
            self.poll(lambda: self._location_step(location), "an ARM operation to finish")

    def _operation_step(self, status_url: str) -> bool | Pending:
        response = self.request("GET", status_url, None)
        operation = self.parse(_Operation, response)
        if operation.status not in _TERMINAL_STATES:
            return Pending(operation.status, retry_after_s(response))
        if operation.status != "Succeeded":
            raise self._failed(f"an ARM operation {operation.status.lower()}", operation.error)
        return True

    def _location_step(self, location: str) -> bool | Pending:
        response = self.request("GET", location, None)
        if response.status_code == 202:
            return Pending("HTTP 202", retry_after_s(response))
        return True

    def _await_provisioned(
        self, path: str, api_version: str, response: httpx.Response
    ) -> dict[str, Any]:
        """The resource once its ``provisioningState`` is terminal; raises if it failed."""

        def step() -> dict[str, Any] | Pending:
            resource = self.get(path, api_version)
            if resource is None:
                return Pending("not found yet")
            return self._provisioned(resource) or Pending("provisioning")

        # A 202 has no body (or a stale one), and a 200/201 may still be provisioning.
        body = self.json_object(response) if response.status_code in (200, 201) else None
        ready = self._provisioned(body) if body and response.content else None
        return ready or self.poll(step, f"{safe_url(path)} to be provisioned")

    def _provisioned(self, resource: dict[str, Any]) -> dict[str, Any] | None:
        state = self.validate(_Resource, resource, "resource")
        provisioning = state.properties.provisioningState if state.properties else None
        if provisioning is None or provisioning == "Succeeded":
            return resource
        if provisioning in _TERMINAL_STATES:
            raise self._failed(f"provisioning {provisioning.lower()}", None)
        return None

    def _failed(self, what: str, detail: _ErrorDetail | None) -> PermanentInfrastructureError:
        said = "" if detail is None else f": [{detail.code}] {detail.message or ''}".rstrip()
        return PermanentInfrastructureError(
            truncate_message(f"{what}{said}"), provider=self._provider
        )


def retry_after_s(response: httpx.Response) -> float | None:
    """The ``Retry-After`` of ``response`` in seconds, when it sent one."""
    return parse_retry_after(response.headers.get("retry-after"))


class _ErrorDetail(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: OptionalText = None
    message: OptionalText = None


class _Operation(BaseModel):
    """An ``Azure-AsyncOperation`` status resource."""

    model_config = ConfigDict(frozen=True)

    status: str
    error: _ErrorDetail | None = None


class _ProvisioningState(BaseModel):
    model_config = ConfigDict(frozen=True)

    provisioningState: str | None = None


class _Resource(BaseModel):
    model_config = ConfigDict(frozen=True)

    properties: _ProvisioningState | None = None
