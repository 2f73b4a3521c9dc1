"""What an HTTP answer means: the one table from status to error kind, and error bodies read.

Every HTTP-based provider hands each response to :func:`raise_for_status`, and wraps each send
in :func:`map_transport_errors` (:class:`providers._pool.PooledClient` does), so httpx errors
and HTTP statuses are translated once, at the boundary, with the httpx original as
``__cause__``. A provider adapts it in two ways, without a table of its own:

- ``error_body``: a reader for its platform's error body. The custom contract and OpenWhisk
  send ``{"error": "...", "code": "..."}`` (:func:`read_flat_error`, the default); Google APIs
  ``{"error": {"code": 404, "message", "status": "NOT_FOUND"}}`` and Azure Resource Manager
  ``{"error": {"code": "ResourceNotFound", "message"}}`` (:func:`read_nested_error`).
- ``overrides``: what a status means for one call. A deploy maps 400 to InvalidConfig; ARM
  answers 409 when another operation on the resource is in progress, which is worth retrying
  (``{409: TransientInfrastructureError}``), not "already deployed".

Error messages are built from the method, the URL without its query string (Azure puts
function keys there) and what the error body says. They never contain request headers, and any
request header value that shows up in a response body is redacted, so a proxy echoing
``Authorization`` back cannot leak it into a log. A provider that builds a message from a
response itself passes it through :func:`response_message` for the same reason.
"""

from __future__ import annotations

import email.utils
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from providers._replies import OptionalText
from providers.errors import (
    AlreadyDeployed,
    AuthError,
    FaasError,
    FaasTimeout,
    InvalidConfig,
    InvocationFailed,
    NotDeployed,
    PayloadTooLarge,
    PermanentInfrastructureError,
    SerializationError,
    Throttled,
    TransientInfrastructureError,
)

__all__ = [
    "MAX_ERROR_MESSAGE_CHARS",
    "STATUS_ERRORS",
    "ErrorBodyReader",
    "ErrorDetail",
    "StatusOverrides",
    "absolute_http_url",
    "error_for_response",
    "map_transport_errors",
    "parse_retry_after",
    "raise_for_status",
    "read_flat_error",
    "read_nested_error",
    "response_message",
    "safe_url",
    "truncate_message",
]

MAX_ERROR_MESSAGE_CHARS = 300

#: HTTP status → error kind. Statuses not listed: other 5xx are
#: TransientInfrastructureError, anything else PermanentInfrastructureError.
#: 400 is a PermanentInfrastructureError here, since what it means depends on the call:
#: a deploy passes ``overrides={400: InvalidConfig}`` where 400 means a refused config.
STATUS_ERRORS: Mapping[int, type[FaasError]] = {
    400: PermanentInfrastructureError,
    401: AuthError,
    403: AuthError,
    404: NotDeployed,
    408: FaasTimeout,
    409: AlreadyDeployed,
    413: PayloadTooLarge,
    429: Throttled,
    503: Throttled,
    504: FaasTimeout,
}


#: Status → error kind for one call, taking precedence over :data:`STATUS_ERRORS`.
StatusOverrides = Mapping[int, type[FaasError]]


@dataclass(frozen=True, slots=True)
class ErrorDetail:
    """What an error body says: the platform's machine code and its human message."""

    code: str | None = None
    message: str | None = None


#: Reads a decoded JSON error body; None when the body is not of its shape or says nothing.
ErrorBodyReader = Callable[[Any], ErrorDetail | None]

# First match wins, so subclasses come before their bases (TimeoutException is a
# TransportError, UnsupportedProtocol and DecodingError are RequestErrors).
_TRANSPORT_ERRORS: tuple[tuple[type[Exception], type[FaasError]], ...] = (
    (httpx.TimeoutException, FaasTimeout),
    (httpx.UnsupportedProtocol, InvalidConfig),
    (httpx.InvalidURL, InvalidConfig),
    (httpx.DecodingError, SerializationError),
    (httpx.RequestError, InvocationFailed),
)

# Request headers whose values are never secret and too common to redact from a body.
_PUBLIC_HEADERS = frozenset(
    {
        "accept",
        "accept-encoding",
        "connection",
        "content-length",
        "content-type",
        "host",
        "user-agent",
    }
)
_MIN_REDACTED_CHARS = 4
_REDACTED = "[redacted]"


class _FlatError(BaseModel):
    """``{"error": "...", "code": "...", "details": ...}``: the custom contract, OpenWhisk."""

    model_config = ConfigDict(frozen=True)

    error: OptionalText = None
    code: OptionalText = None


class _Status(BaseModel):
    """The object under ``error``: ``google.rpc.Status`` or an ARM ``ErrorDetail``."""

    model_config = ConfigDict(frozen=True)

    # Google's ``code`` is the HTTP status again, as a number (read as absent here), and its
    # name is ``status``; ARM's ``code`` is the name ("ResourceNotFound").
    code: OptionalText = None
    message: OptionalText = None
    status: OptionalText = None


class _NestedError(BaseModel):
    model_config = ConfigDict(frozen=True)

    error: _Status


def read_flat_error(body: Any) -> ErrorDetail | None:
    """Read the custom contract's (and OpenWhisk's) ``{"error": "...", "code": "..."}``."""
    try:
        parsed = _FlatError.model_validate(body)
    except ValidationError:
        return None
    return _detail_or_none(parsed.code, parsed.error)


def read_nested_error(body: Any) -> ErrorDetail | None:
    """Read Google's ``{"error": {code, message, status}}`` or ARM's ``{"error": {code, message}}``.

    The code is Google's ``status`` name (``NOT_FOUND``) or ARM's ``code`` name; Google's
    numeric ``code`` is the HTTP status again and adds nothing.
    """
    try:
        status = _NestedError.model_validate(body).error
    except ValidationError:
        return None
    return _detail_or_none(status.status or status.code, status.message)


def truncate_message(text: str) -> str:
    """Cut ``text`` to :data:`MAX_ERROR_MESSAGE_CHARS`, so one reply cannot flood a log line."""
    if len(text) <= MAX_ERROR_MESSAGE_CHARS:
        return text
    return text[: MAX_ERROR_MESSAGE_CHARS - 3] + "..."


def response_message(response: httpx.Response, text: str) -> str:
    """``text``, an error message built from ``response``, made safe to log and raise.

    Every value of a request header that ``text`` echoes is redacted (a function or proxy may
    echo ``Authorization`` back), then the result is cut by :func:`truncate_message`.
    """
    return truncate_message(_redact(text, response.request.headers))


def absolute_http_url(url: str) -> str:
    """``url`` itself if it is an absolute http(s) URL, the only kind a provider sends to.

    Raises
    ------
    ValueError
        Anything else, saying what is wrong without quoting the URL (it may hold a password).
    """
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as error:
        raise ValueError(f"not a URL: {error}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError("the URL must be absolute, with an http or https scheme")
    return url


def safe_url(url: str | httpx.URL) -> str:
    """``url`` without its query string, fragment and user info, fit for a message.

    Query strings carry keys on some platforms (Azure's ``?code=``), user info passwords.
    """
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return "<invalid url>"
    return str(parsed.copy_with(query=None, fragment=None, username=None, password=None))


@contextmanager
def map_transport_errors(provider: str, method: str, url: str | httpx.URL) -> Iterator[None]:
    """Translate the httpx exceptions raised inside the block into FaasError.

    Timeouts (connect, read, write, pool) become :class:`FaasTimeout`; connection failures
    :class:`InvocationFailed`; a bad URL or scheme :class:`InvalidConfig`; an undecodable
    body :class:`SerializationError`.

    Raises
    ------
    FaasError
        With the httpx exception as ``__cause__``.
    """
    try:
        yield
    except (httpx.RequestError, httpx.InvalidURL) as error:
        error_type = next(kind for base, kind in _TRANSPORT_ERRORS if isinstance(error, base))
        where = f"{method} {safe_url(url)}"
        message = f"{where}: {type(error).__name__}: {error}" if str(error) else where
        raise error_type(truncate_message(message), provider=provider) from error


def raise_for_status(
    response: httpx.Response,
    *,
    provider: str,
    overrides: StatusOverrides | None = None,
    error_body: ErrorBodyReader = read_flat_error,
) -> None:
    """Return if ``response`` is a 2xx; raise the FaasError its status maps to otherwise.

    Parameters
    ----------
    overrides:
        Status → error kind for this call only, taking precedence
        over :data:`STATUS_ERRORS` (a deploy maps 400 to InvalidConfig).
    error_body:
        Reads the platform's error body for the message.

    Raises
    ------
    FaasError
        The kind :func:`error_for_response` picks, with an ``httpx.HTTPStatusError`` as cause.
    """
    if response.is_success:
        return
    error = error_for_response(
        response, provider=provider, overrides=overrides, error_body=error_body
    )
    cause = httpx.HTTPStatusError(
        f"HTTP {response.status_code}", request=response.request, response=response
    )
    raise error from cause


def error_for_response(
    response: httpx.Response,
    *,
    provider: str,
    overrides: StatusOverrides | None = None,
    error_body: ErrorBodyReader = read_flat_error,
) -> FaasError:
    """Build (not raise) the FaasError for a non-2xx ``response``.

    Transient errors carry the parsed ``Retry-After`` (throttling sends one, and so does ARM
    with "operation in progress"); a permanent one has nothing to wait for. 5xx statuses not
    in the table are TransientInfrastructureError, every other unlisted status a
    PermanentInfrastructureError.
    """
    status = response.status_code
    error_type = _error_type_for(status, overrides)
    retry_after_s = parse_retry_after(response.headers.get("retry-after"))
    return error_type(
        _status_message(response, error_body),
        provider=provider,
        status=status,
        retry_after_s=retry_after_s if error_type.retryable else None,
    )


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header, or None when absent or unreadable.

    Both forms of RFC 9110 are read: delta-seconds (``120``) and an HTTP-date
    (``Wed, 21 Oct 2015 07:28:00 GMT``, counted from ``now``). A date in the past means 0.
    """
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    reference = now if now is not None else datetime.now(UTC)
    return max(0.0, (when - reference).total_seconds())


def _error_type_for(status: int, overrides: StatusOverrides | None) -> type[FaasError]:
    chosen = (overrides or {}).get(status) or STATUS_ERRORS.get(status)
    if chosen is not None:
        return chosen
    return TransientInfrastructureError if status >= 500 else PermanentInfrastructureError


def _status_message(response: httpx.Response, error_body: ErrorBodyReader) -> str:
    request = response.request
    where = f"{request.method} {safe_url(request.url)}"
    detail = _body_detail(response, error_body)
    message = f"{where}: HTTP {response.status_code}" + (f": {detail}" if detail else "")
    return response_message(response, message)


def _body_detail(response: httpx.Response, error_body: ErrorBodyReader) -> str:
    # A body the reader knows gives "[code] message"; another JSON body says nothing; anything
    # else (an HTML page from a proxy) is reduced to its first characters.
    try:
        body = response.json()
    except (ValueError, UnicodeDecodeError):
        return " ".join(response.text.split())[:MAX_ERROR_MESSAGE_CHARS]
    detail = error_body(body)
    if detail is None:
        return ""
    parts = [f"[{detail.code}]" if detail.code else "", detail.message or ""]
    return " ".join(part for part in parts if part)


def _detail_or_none(code: str | None, message: str | None) -> ErrorDetail | None:
    return None if code is None and message is None else ErrorDetail(code=code, message=message)


def _redact(text: str, headers: httpx.Headers) -> str:
    secrets: set[str] = set()
    for name, value in headers.items():
        if name.lower() not in _PUBLIC_HEADERS:
            # Both the whole value and its credential part ("Bearer <token>").
            secrets.update({value, *value.split()[-1:]})
    # Longest first, so a token inside a redacted whole value leaves no fragment behind.
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= _MIN_REDACTED_CHARS:
            text = text.replace(secret, _REDACTED)
    return text
