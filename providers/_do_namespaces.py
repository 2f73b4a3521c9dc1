"""DigitalOcean's v2 Functions API: a namespace found by label and region, or created.

The API (``https://api.digitalocean.com``, ``Authorization: Bearer <token>``) manages
namespaces only; code goes to the namespace's ``api_host`` (:mod:`providers._openwhisk`). A
namespace has no ``id`` field: its id is ``namespace`` (``fn-<uuid>``), and ``uuid:key`` are
its OpenWhisk credentials. Errors are ``{id, message, request_id}``; a 429 says when to come
back in ``ratelimit-reset`` (:func:`providers._openwhisk.check_response` reads it).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from providers._http import ErrorDetail
from providers._openwhisk import check_response
from providers._pool import PooledClient
from providers._replies import OptionalText, parse_reply
from providers.errors import PermanentInfrastructureError

__all__ = ["NAMESPACES_PATH", "Namespace", "find_or_create_namespace", "read_do_error"]

NAMESPACES_PATH = "/v2/functions/namespaces"
# "namespace limit reached": an account holds at most 10 namespaces.
_NAMESPACE_LIMIT_STATUS = 422


class Namespace(BaseModel):
    """A namespace as the API lists and creates it; ``key`` is a secret, kept out of reprs."""

    model_config = ConfigDict(frozen=True)

    api_host: str
    namespace: str
    uuid: str
    key: str = Field(repr=False)
    label: str
    region: str


class _NamespaceList(BaseModel):
    model_config = ConfigDict(frozen=True)

    namespaces: tuple[Namespace, ...] = ()


class _NamespaceCreated(BaseModel):
    model_config = ConfigDict(frozen=True)

    namespace: Namespace


class _DoError(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: OptionalText = None
    message: OptionalText = None


def read_do_error(body: Any) -> ErrorDetail | None:
    """Read DigitalOcean's ``{"id": "too_many_requests", "message": ...}`` error body."""
    try:
        parsed = _DoError.model_validate(body)
    except ValidationError:
        return None
    if parsed.id is None and parsed.message is None:
        return None
    return ErrorDetail(code=parsed.id, message=parsed.message)


def find_or_create_namespace(
    api: PooledClient,
    label: str,
    region: str,
    *,
    provider: str,
    throttle_retry_after_s: float,
) -> Namespace:
    """The namespace labelled ``label`` in ``region``, created there when there is none.

    A namespace of that label in another region is never taken: its functions would run, and
    be priced, elsewhere.

    Raises
    ------
    PermanentInfrastructureError
        The account is at its namespace limit (422); the message says what to do.
    FaasError
        Any other refusal, typed by its status (401 AuthError, 429 Throttled until
        ``ratelimit-reset``, 5xx retryable).
    """

    def check(response: Any) -> None:
        check_response(
            response,
            provider=provider,
            throttle_retry_after_s=throttle_retry_after_s,
            error_body=read_do_error,
        )

    response = api.request("GET", NAMESPACES_PATH)
    check(response)
    listed = parse_reply(_NamespaceList, response, provider=provider)
    for namespace in listed.namespaces:
        if namespace.label == label and namespace.region == region:
            return namespace
    response = api.request("POST", NAMESPACES_PATH, json={"label": label, "region": region})
    if response.status_code == _NAMESPACE_LIMIT_STATUS:
        raise PermanentInfrastructureError(
            f"cannot create the namespace {label!r} in {region}: the account is at "
            "DigitalOcean's limit of namespaces; delete one, or set namespace_label to an "
            "existing namespace of this region",
            provider=provider,
            status=response.status_code,
        )
    check(response)
    return parse_reply(_NamespaceCreated, response, provider=provider).namespace
