"""A thin client of the OpenWhisk REST API (``{api_host}/api/v1``): actions and activations.

DigitalOcean Functions deploys and invokes through the OpenWhisk API of each namespace's
``api_host``, authenticated by Basic ``uuid:key``; no maintained Python client exists. This is
the wire only: requests, the reply models, and what an HTTP status means. What an activation's
``response.status`` means for a job is the executor's business.

- ``PUT /namespaces/{ns}/actions/{name}?overwrite=true`` creates or replaces an action;
  ``GET`` reads it back, ``DELETE`` removes it (404 when missing).
- ``POST /namespaces/{ns}/actions/{name}?blocking=true`` answers the activation record: 200
  on success, 502 for an application or developer error, 500 for a whisk internal error, or
  202 ``{activationId}`` when the blocking wait ended before the action did.
- ``GET /namespaces/{ns}/activations/{id}`` answers 404 until the record exists.

OpenWhisk sends no ``Retry-After`` with its 429s, and DigitalOcean's API sends
``ratelimit-reset`` (epoch seconds) instead: :func:`check_response` reads either, or falls
back to a given wait.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field

from providers._http import (
    ErrorBodyReader,
    StatusOverrides,
    error_for_response,
    read_flat_error,
)
from providers._poll import Pending
from providers._pool import PooledClient
from providers._replies import json_object_or_none, parse_reply, validate_reply

__all__ = [
    "Action",
    "ActionLimits",
    "Activation",
    "ActivationResponse",
    "Invoked",
    "KeyValue",
    "OpenWhiskClient",
    "check_response",
    "error_message_of",
]

_API_PREFIX = "/api/v1/namespaces"
# The statuses whose body is an activation record (a finished activation, failed or not).
_RECORD_STATUSES = frozenset({200, 500, 502})


class KeyValue(BaseModel):
    """One entry of an OpenWhisk ``parameters`` or ``annotations`` array."""

    model_config = ConfigDict(frozen=True)

    key: str
    value: Any = None


class ActionLimits(BaseModel):
    model_config = ConfigDict(frozen=True)

    #: Milliseconds, initialisation included.
    timeout: int
    #: Megabytes.
    memory: int


class Action(BaseModel):
    """An action as ``PUT`` and ``GET`` answer it (parameters are not read: they hold secrets)."""

    model_config = ConfigDict(frozen=True)

    name: str
    namespace: str
    version: str
    limits: ActionLimits
    #: Epoch milliseconds of the last update.
    updated: int | None = None


class ActivationResponse(BaseModel):
    model_config = ConfigDict(frozen=True)

    #: ``success``, ``application error``, ``action developer error``, ``whisk internal error``.
    status: str
    success: bool
    result: Any = None


class Activation(BaseModel):
    """An activation record; ``annotations`` carry ``initTime`` on a cold start only."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    activation_id: str = Field(alias="activationId")
    #: Milliseconds the action ran (initialisation included on a cold start).
    duration: float | None = None
    annotations: tuple[KeyValue, ...] = ()
    response: ActivationResponse

    def annotation(self, key: str) -> Any:
        """The value of annotation ``key``, or None when absent."""
        return next((entry.value for entry in self.annotations if entry.key == key), None)

    def has_annotation(self, key: str) -> bool:
        return any(entry.key == key for entry in self.annotations)


@dataclass(frozen=True, slots=True)
class Invoked:
    """What a blocking invoke answered: the record when the activation finished in time."""

    activation_id: str
    #: None when the blocking wait ended first (HTTP 202): poll :meth:`OpenWhiskClient.activation`.
    record: Activation | None
    #: The invoke's HTTP status: 200, 502 (application or developer error), 500, or 202.
    http_status: int


class _Accepted(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True)

    activation_id: str = Field(alias="activationId")


def check_response(
    response: httpx.Response,
    *,
    provider: str,
    throttle_retry_after_s: float,
    overrides: StatusOverrides | None = None,
    error_body: ErrorBodyReader = read_flat_error,
    now: Callable[[], float] = time.time,
) -> None:
    """:func:`providers._http.raise_for_status`, reading a throttle's wait wherever it is.

    A retryable error's wait is the ``Retry-After`` header, else ``ratelimit-reset`` (Unix
    seconds, DigitalOcean's API) counted from ``now``; a 429 with neither waits
    ``throttle_retry_after_s``.

    Raises
    ------
    FaasError
        The kind the status maps to, with an ``httpx.HTTPStatusError`` as cause.
    """
    if response.is_success:
        return
    error = error_for_response(
        response, provider=provider, overrides=overrides, error_body=error_body
    )
    if error.retryable and error.retry_after_s is None:
        error.retry_after_s = _reset_in_s(response, now())
        if error.retry_after_s is None and response.status_code == 429:
            error.retry_after_s = throttle_retry_after_s
    cause = httpx.HTTPStatusError(
        f"HTTP {response.status_code}", request=response.request, response=response
    )
    raise error from cause


def error_message_of(activation: Activation) -> str | None:
    """What a failed activation's ``result.error`` says, when it says it in a string."""
    result = activation.response.result
    error = result.get("error") if isinstance(result, dict) else None
    return error if isinstance(error, str) else None


class OpenWhiskClient:
    """Actions and activations of one namespace, over a pooled client based at ``api_host``.

    Parameters
    ----------
    http:
        Based at the namespace's ``api_host``, authenticated with Basic ``uuid:key``.
    namespace:
        The ``fn-...`` namespace id.
    provider:
        ``provider_name`` put on every error.
    throttle_retry_after_s:
        The wait a 429 without rate-limit headers asks for.
    """

    def __init__(
        self,
        http: PooledClient,
        namespace: str,
        *,
        provider: str,
        throttle_retry_after_s: float,
    ) -> None:
        self._http = http
        self._namespace = namespace
        self._provider = provider
        self._throttle_retry_after_s = throttle_retry_after_s

    def __repr__(self) -> str:
        return f"OpenWhiskClient(namespace={self._namespace!r}, http={self._http!r})"

    def action_url(self, name: str) -> str:
        """The action's REST path under the namespace."""
        return f"{_API_PREFIX}/{self._namespace}/actions/{name}"

    def put_action(
        self,
        name: str,
        body: dict[str, Any],
        *,
        timeout: httpx.Timeout,
        overrides: StatusOverrides | None = None,
    ) -> Action:
        """Create or replace the action; the reply read back as :class:`Action`."""
        response = self._http.request(
            "PUT",
            self.action_url(name),
            params={"overwrite": "true"},
            json=body,
            timeout=timeout,
        )
        self._check(response, overrides)
        return parse_reply(Action, response, provider=self._provider)

    def get_action(self, name: str) -> Action:
        """The action's record; raises NotDeployed when there is none."""
        response = self._http.request("GET", self.action_url(name))
        self._check(response)
        return parse_reply(Action, response, provider=self._provider)

    def delete_action(self, name: str) -> bool:
        """Delete the action; False when it was not there."""
        response = self._http.request("DELETE", self.action_url(name))
        if response.status_code == 404:
            return False
        self._check(response)
        return True

    def invoke(self, name: str, content: bytes, *, timeout: httpx.Timeout) -> Invoked:
        """Invoke blocking: the finished activation's record, or its id when still running.

        Raises
        ------
        FaasError
            A status without an activation record (401, 403, 404, 413, 429, a bare 5xx).
        """
        response = self._http.request(
            "POST",
            self.action_url(name),
            params={"blocking": "true"},
            content=content,
            headers={"Content-Type": "application/json"},
            timeout=timeout,
        )
        if response.status_code == 202:
            accepted = parse_reply(_Accepted, response, provider=self._provider)
            return Invoked(accepted.activation_id, None, response.status_code)
        record = self._record_of(response)
        if record is None:
            self._check(response)
            # A 2xx that is neither 202 nor a record: malformed, named by the reply model.
            record = parse_reply(Activation, response, provider=self._provider)
        return Invoked(record.activation_id, record, response.status_code)

    def activation(self, activation_id: str) -> Activation | Pending:
        """The activation's record, or :class:`Pending` while it does not exist yet (404)."""
        response = self._http.request(
            "GET", f"{_API_PREFIX}/{self._namespace}/activations/{activation_id}"
        )
        if response.status_code == 404:
            return Pending(seen=f"activation {activation_id} not recorded yet")
        self._check(response)
        return parse_reply(Activation, response, provider=self._provider)

    def close(self) -> None:
        self._http.close()

    def _record_of(self, response: httpx.Response) -> Activation | None:
        if response.status_code not in _RECORD_STATUSES:
            return None
        body = json_object_or_none(response.content)
        if body is None or "response" not in body or "activationId" not in body:
            return None
        return validate_reply(
            Activation,
            body,
            provider=self._provider,
            what=f"activation (HTTP {response.status_code})",
        )

    def _check(self, response: httpx.Response, overrides: StatusOverrides | None = None) -> None:
        check_response(
            response,
            provider=self._provider,
            throttle_retry_after_s=self._throttle_retry_after_s,
            overrides=overrides,
        )


def _reset_in_s(response: httpx.Response, now_s: float) -> float | None:
    value = response.headers.get("ratelimit-reset", "").strip()
    if not value.isdigit():
        return None
    return max(0.0, int(value) - now_s)
