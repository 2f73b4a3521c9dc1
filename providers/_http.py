"""The HTTP helper every HTTP-based provider shares: one pooled client, one error mapping.

A provider module builds one :class:`PooledClient` per executor from an :class:`HttpSettings`
and sends every request through :meth:`PooledClient.request`, which turns httpx exceptions into
:class:`~providers.errors.FaasError`. It then hands each response to :func:`raise_for_status`,
the one table from HTTP status to error kind. Both keep the httpx original as ``__cause__``.

Error messages are built from the method, the URL without its query string (Azure puts
function keys there) and the response's contract body ``{"error", "code"}``. They never contain
request headers, and any request header value that shows up in a response body is redacted, so
a proxy echoing ``Authorization`` back cannot leak it into a log.
"""

from __future__ import annotations

import email.utils
import ssl
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Self

import httpx

from providers.errors import (
    AlreadyDeployed,
    AuthError,
    FaasError,
    FaasTimeout,
    InfrastructureError,
    InvalidConfig,
    InvocationFailed,
    NotDeployed,
    PayloadTooLarge,
    SerializationError,
    Throttled,
)

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT_S",
    "DEFAULT_LIMITS",
    "DEFAULT_POOL_TIMEOUT_S",
    "DEFAULT_READ_TIMEOUT_S",
    "DEFAULT_TIMEOUT",
    "DEFAULT_WRITE_TIMEOUT_S",
    "MAX_ERROR_MESSAGE_CHARS",
    "STATUS_ERRORS",
    "ClientCert",
    "HttpSettings",
    "PooledClient",
    "StatusOverrides",
    "error_for_response",
    "map_transport_errors",
    "parse_retry_after",
    "raise_for_status",
    "to_seconds",
    "truncate_message",
]

DEFAULT_CONNECT_TIMEOUT_S = 5.0
DEFAULT_READ_TIMEOUT_S = 30.0
DEFAULT_WRITE_TIMEOUT_S = 30.0
DEFAULT_POOL_TIMEOUT_S = 10.0
DEFAULT_TIMEOUT = httpx.Timeout(
    connect=DEFAULT_CONNECT_TIMEOUT_S,
    read=DEFAULT_READ_TIMEOUT_S,
    write=DEFAULT_WRITE_TIMEOUT_S,
    pool=DEFAULT_POOL_TIMEOUT_S,
)
# The contract asks a platform for at least 100 concurrent invocations; one executor is shared
# by every thread of a worker process, so its pool must not be the narrower pipe.
DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)
MAX_ERROR_MESSAGE_CHARS = 300

StatusOverrides = Mapping[int, type[FaasError]]

#: HTTP status → error kind. Statuses not listed: other 5xx are retryable
#: InfrastructureError, anything else non-retryable InfrastructureError.
#: 400 is a non-retryable InfrastructureError here, since what it means depends on the call:
#: a deploy passes ``overrides={400: InvalidConfig}`` where 400 means a refused config.
STATUS_ERRORS: Mapping[int, type[FaasError]] = {
    400: InfrastructureError,
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


def to_seconds(value: float | timedelta) -> float:
    """Convert a duration given as seconds or a timedelta to seconds, once, at the edge.

    Raises
    ------
    ValueError
        ``value`` is negative.
    """
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative, got {seconds} s")
    return seconds


def truncate_message(text: str) -> str:
    """Cut ``text`` to :data:`MAX_ERROR_MESSAGE_CHARS`, so one reply cannot flood a log line."""
    if len(text) <= MAX_ERROR_MESSAGE_CHARS:
        return text
    return text[: MAX_ERROR_MESSAGE_CHARS - 3] + "..."


@dataclass(frozen=True, slots=True)
class ClientCert:
    """A client certificate for mTLS: a PEM certificate and its key (or both in one file)."""

    cert_path: Path
    key_path: Path | None = None


@dataclass(frozen=True)
class HttpSettings:
    """Everything the pooled client is built from, as one comparable value.

    ``headers`` may carry credentials, so the repr lists header names only.

    Parameters
    ----------
    base_url:
        Prefix of every relative request URL.
    timeout:
        Default timeouts; a request may pass its own (an invoke reads for as long as the job's
        function may run).
    headers:
        Sent with every request.
    client_cert:
        Presented to servers that ask for one (mTLS).
    verify:
        True for the system's CA bundle, False to skip verification (tests only), or the path
        of a CA bundle that signs the platform's certificate.
    limits:
        Connection pool size.
    """

    base_url: str = ""
    # httpx's config objects define __eq__ without __hash__, which dataclasses take for
    # mutability; they are never mutated, so sharing the module defaults is safe.
    timeout: httpx.Timeout = field(default_factory=lambda: DEFAULT_TIMEOUT)
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    client_cert: ClientCert | None = None
    verify: bool | Path = True
    limits: httpx.Limits = field(default_factory=lambda: DEFAULT_LIMITS)

    def __repr__(self) -> str:
        return (
            f"HttpSettings(base_url={self.base_url!r}, timeout={self.timeout!r}, "
            f"header_names={sorted(self.headers)!r}, client_cert={self.client_cert!r}, "
            f"verify={self.verify!r})"
        )

    def with_header(self, name: str, value: str) -> Self:
        """A copy that also sends ``name: value``, replacing a header of the same name."""
        kept = {key: text for key, text in self.headers.items() if key.lower() != name.lower()}
        return replace(self, headers={**kept, name: value})


class PooledClient:
    """One pooled :class:`httpx.Client` per executor, built on first use.

    Constructors of executors must do no I/O, and loading a client certificate reads files,
    so the client is built by the first request. Celery's thread pools share one executor, so
    building is guarded by a lock and happens once. httpx clients are themselves thread-safe.

    Parameters
    ----------
    settings:
        What the client is built from.
    provider:
        ``provider_name`` put on every error raised.
    transport:
        Replaces the network transport (tests, or a custom one).
    """

    def __init__(
        self,
        settings: HttpSettings,
        *,
        provider: str,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._settings = settings
        self._provider = provider
        self._transport = transport
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"PooledClient({self._settings!r}, provider={self._provider!r})"

    @property
    def settings(self) -> HttpSettings:
        """The settings the next client is built from."""
        return self._settings

    def configure(self, settings: HttpSettings) -> None:
        """Use ``settings`` from now on; a client already built is closed and rebuilt lazily.

        Meant for set-up time (the executor's ``with_*`` builders), before the executor is
        shared: a request in flight on the old client may fail.
        """
        with self._lock:
            old, self._client = self._client, None
            self._settings = settings
        if old is not None:
            old.close()

    @property
    def client(self) -> httpx.Client:
        """The pooled client, built on first use.

        Raises
        ------
        InvalidConfig
            The client certificate or CA bundle cannot be loaded.
        """
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._build()
                client = self._client
        return client

    def request(
        self,
        method: str,
        url: str,
        *,
        timeout: httpx.Timeout | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send one request and return its response, whatever its status.

        Parameters
        ----------
        timeout:
            Replaces the settings' timeout for this request.
        kwargs:
            Passed to :meth:`httpx.Client.request` (``content``, ``headers``, ``params``).

        Raises
        ------
        FaasError
            A transport failure, mapped by :func:`map_transport_errors`.
        """
        request_timeout = self._settings.timeout if timeout is None else timeout
        with map_transport_errors(self._provider, method, url):
            return self.client.request(method, url, timeout=request_timeout, **kwargs)

    def close(self) -> None:
        """Close the pooled connections; the next request builds a new client."""
        self.configure(self._settings)

    def _build(self) -> httpx.Client:
        settings = self._settings
        return httpx.Client(
            base_url=settings.base_url,
            headers=dict(settings.headers),
            timeout=settings.timeout,
            limits=settings.limits,
            verify=_ssl_context(settings, self._provider),
            transport=self._transport,
        )


def _ssl_context(settings: HttpSettings, provider: str) -> ssl.SSLContext | bool:
    # httpx 0.28 deprecates `cert=` and string `verify=`; an SSLContext is the supported way.
    if settings.client_cert is None and not isinstance(settings.verify, Path):
        return settings.verify
    try:
        if isinstance(settings.verify, Path):
            context = ssl.create_default_context(cafile=str(settings.verify))
        elif settings.verify:
            context = httpx.create_ssl_context()
        else:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if settings.client_cert is not None:
            cert = settings.client_cert
            context.load_cert_chain(
                str(cert.cert_path), None if cert.key_path is None else str(cert.key_path)
            )
    except (OSError, ssl.SSLError) as error:
        raise InvalidConfig(
            f"cannot load TLS material ({type(error).__name__}: {error.strerror or error})",
            provider=provider,
        ) from error
    return context


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
        where = f"{method} {_safe_url(url)}"
        message = f"{where}: {type(error).__name__}: {error}" if str(error) else where
        raise error_type(truncate_message(message), provider=provider) from error


def raise_for_status(
    response: httpx.Response,
    *,
    provider: str,
    overrides: StatusOverrides | None = None,
) -> None:
    """Return if ``response`` is a 2xx; raise the FaasError its status maps to otherwise.

    Parameters
    ----------
    overrides:
        Status → error kind for this call only, taking precedence over :data:`STATUS_ERRORS`
        (a deploy maps 400 to InvalidConfig).

    Raises
    ------
    FaasError
        The kind :func:`error_for_response` picks, with an ``httpx.HTTPStatusError`` as cause.
    """
    if response.is_success:
        return
    error = error_for_response(response, provider=provider, overrides=overrides)
    cause = httpx.HTTPStatusError(
        f"HTTP {response.status_code}", request=response.request, response=response
    )
    raise error from cause


def error_for_response(
    response: httpx.Response,
    *,
    provider: str,
    overrides: StatusOverrides | None = None,
) -> FaasError:
    """Build (not raise) the FaasError for a non-2xx ``response``.

    Throttling errors carry the parsed ``Retry-After``; 5xx statuses not in the table are
    retryable InfrastructureError, every other unlisted status a non-retryable one.
    """
    status = response.status_code
    error_type = (overrides or {}).get(status) or STATUS_ERRORS.get(status, InfrastructureError)
    retry_after_s = parse_retry_after(response.headers.get("retry-after"))
    retryable = status >= 500 if error_type is InfrastructureError else None
    return error_type(
        _status_message(response),
        provider=provider,
        status=status,
        retry_after_s=retry_after_s if error_type is Throttled else None,
        retryable=retryable,
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


def _status_message(response: httpx.Response) -> str:
    request = response.request
    where = f"{request.method} {_safe_url(request.url)}"
    detail = _body_detail(response)
    message = f"{where}: HTTP {response.status_code}" + (f": {detail}" if detail else "")
    return truncate_message(_redact(message, request.headers))


def _body_detail(response: httpx.Response) -> str:
    # The contract's error body is {"error", "code", "details"}; anything else (an HTML page
    # from a proxy) is reduced to its first characters.
    try:
        body = response.json()
    except (ValueError, UnicodeDecodeError):
        return " ".join(response.text.split())[:MAX_ERROR_MESSAGE_CHARS]
    if not isinstance(body, dict):
        return ""
    code, error = body.get("code"), body.get("error")
    parts = [f"[{code}]" if isinstance(code, str) else "", error if isinstance(error, str) else ""]
    return " ".join(part for part in parts if part)


def _safe_url(url: str | httpx.URL) -> str:
    # Query strings carry keys on some platforms (Azure `?code=`), user info carries passwords.
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return "<invalid url>"
    return str(parsed.copy_with(query=None, fragment=None, username=None, password=None))


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
