"""The connection pool every HTTP-based provider shares: one :class:`PooledClient` per executor.

A provider module builds one :class:`PooledClient` per executor from an :class:`HttpSettings`
(base URL, timeouts, headers, an :class:`httpx.Auth` flow from :mod:`providers._auth`, TLS
material, limits) and sends every request through :meth:`PooledClient.request`, which checks a
client out of the pool, sends the request on it and turns httpx exceptions into
:class:`~providers.errors.FaasError` (:func:`providers._http.map_transport_errors`). What a
response's status means is :mod:`providers._http`'s business.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Self

import httpx

from providers._http import map_transport_errors
from providers.errors import InvalidConfig

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT_S",
    "DEFAULT_LIMITS",
    "DEFAULT_POOL_TIMEOUT_S",
    "DEFAULT_READ_TIMEOUT_S",
    "DEFAULT_TIMEOUT",
    "DEFAULT_WRITE_TIMEOUT_S",
    "ClientCert",
    "HttpSettings",
    "PooledClient",
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


@dataclass(frozen=True, slots=True)
class ClientCert:
    """A client certificate for mTLS: a PEM certificate and its key (or both in one file)."""

    cert_path: Path
    key_path: Path | None = None


@dataclass(frozen=True)
class HttpSettings:
    """Everything the pooled clients are built from, as one comparable value.

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
        How many connections may be open at once and how many may stay open idle.
    auth:
        The flow that authenticates every request (:mod:`providers._auth`, or httpx's own
        ``BasicAuth``); one object shared by every client of the pool, so a token it caches
        is fetched once for all of them. Its repr must not show secrets (ours do not).
    """

    base_url: str = ""
    # httpx's config objects define __eq__ without __hash__, which dataclasses take for
    # mutability; they are never mutated, so sharing the module defaults is safe.
    timeout: httpx.Timeout = field(default_factory=lambda: DEFAULT_TIMEOUT)
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    client_cert: ClientCert | None = None
    verify: bool | Path = True
    limits: httpx.Limits = field(default_factory=lambda: DEFAULT_LIMITS)
    auth: httpx.Auth | None = None

    def __repr__(self) -> str:
        return (
            f"HttpSettings(base_url={self.base_url!r}, timeout={self.timeout!r}, "
            f"header_names={sorted(self.headers)!r}, client_cert={self.client_cert!r}, "
            f"verify={self.verify!r}, auth={self.auth!r})"
        )

    def with_header(self, name: str, value: str) -> Self:
        """A copy that also sends ``name: value``, replacing a header of the same name."""
        kept = {key: text for key, text in self.headers.items() if key.lower() != name.lower()}
        return replace(self, headers={**kept, name: value})


class PooledClient:
    """A pool of single-connection :class:`httpx.Client` objects, one pool per executor.

    Each request checks out an idle client, the most recently returned one (its connection is
    the likeliest to still be open), or builds one, and gives it back once the response is
    read; httpx does all the HTTP. One shared client with a 100-connection pool would be
    simpler, but httpcore walks every connection of its pool on each request and each response
    close, polling each idle socket (``is_socket_readable``), and gevent emulates that poll:
    with about 50 requests in flight the walk took 12 % of a gevent worker's CPU. Measured with
    50 concurrent callers and a local 100 ms function, CPU per call fell from 1.50 to 1.07 ms
    with threads and from 1.53 to 1.27 ms with gevent.

    ``settings.limits`` keeps httpx's meaning: at most ``max_connections`` clients exist at
    once, a request that finds none idle and the cap reached waits up to the pool timeout, and
    at most ``max_keepalive_connections`` idle clients are kept.

    Constructors of executors must do no I/O, and loading a client certificate reads files, so
    clients are built by requests, outside the lock, from one TLS context per settings value.
    The lock is a :mod:`threading` one: Celery's thread pools share one executor, and gevent's
    monkey-patching makes the same code serve greenlets.

    Parameters
    ----------
    settings:
        What the clients are built from.
    provider:
        ``provider_name`` put on every error raised.
    transport:
        Replaces the network transport (tests, or a custom one). Every client shares it and
        none closes it: it stays the caller's to close.
    """

    def __init__(
        self,
        settings: HttpSettings,
        *,
        provider: str,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._provider = provider
        self._transport = None if transport is None else _SharedTransport(transport)
        self._generation = _Generation(settings, provider)
        self._lock = threading.Lock()
        # Notified whenever a client goes idle or one fewer exists.
        self._returned = threading.Condition(self._lock)
        self._idle: list[httpx.Client] = []
        # Clients built, being built or in flight, of every generation, until closed.
        self._open = 0

    def __repr__(self) -> str:
        return f"PooledClient({self.settings!r}, provider={self._provider!r})"

    @property
    def settings(self) -> HttpSettings:
        """The settings the next client is built from."""
        return self._generation.settings

    def configure(self, settings: HttpSettings) -> None:
        """Use ``settings`` from now on; clients are rebuilt lazily.

        Idle clients are closed now, those in flight when their request ends, so a request in
        flight finishes on the settings it started with.
        """
        self._reset(settings)

    def request(
        self,
        method: str,
        url: str,
        *,
        timeout: httpx.Timeout | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send one request and return its response, read in full, whatever its status.

        Parameters
        ----------
        timeout:
            Replaces the settings' timeout for this request; its ``pool`` part bounds the wait
            for a client when ``max_connections`` are busy.
        kwargs:
            Passed to :meth:`httpx.Client.request` (``content``, ``headers``, ``params``).

        Raises
        ------
        FaasError
            A transport failure, mapped by :func:`map_transport_errors`; no client free within
            the pool timeout is an ``httpx.PoolTimeout`` mapped the same way.
        InvalidConfig
            The client certificate or CA bundle cannot be loaded.
        """
        request_timeout = self.settings.timeout if timeout is None else timeout
        with map_transport_errors(self._provider, method, url):
            client, generation = self._checkout(request_timeout.pool)
            try:
                return client.request(method, url, timeout=request_timeout, **kwargs)
            finally:
                # httpx already dropped a connection that failed, so the client is reusable.
                self._give_back(client, generation)

    def close(self) -> None:
        """Close the idle clients now, the busy ones when they come back; requests go on."""
        self._reset(None)

    def _reset(self, settings: HttpSettings | None) -> None:
        # Start a new generation, from `settings` or (None) the current ones read under the
        # lock, so a close cannot undo a configure that runs at the same time.
        with self._lock:
            current = self._generation.settings if settings is None else settings
            self._generation = _Generation(current, self._provider)
            stale, self._idle = self._idle, []
            self._open -= len(stale)
            # The new limits may let waiting requests build.
            self._returned.notify_all()
        for client in stale:
            client.close()

    def _checkout(self, pool_timeout_s: float | None) -> tuple[httpx.Client, _Generation]:
        deadline = None if pool_timeout_s is None else time.monotonic() + pool_timeout_s
        with self._lock:
            while not self._idle and not self._has_room():
                remaining_s = None if deadline is None else deadline - time.monotonic()
                if remaining_s is not None and remaining_s <= 0:
                    raise httpx.PoolTimeout(f"no connection free within {pool_timeout_s} s")
                self._returned.wait(remaining_s)
            generation = self._generation
            if self._idle:
                return self._idle.pop(), generation
            self._open += 1
        try:
            return self._build(generation), generation
        except BaseException:
            with self._lock:
                self._open -= 1
                self._returned.notify()
            raise

    def _has_room(self) -> bool:
        cap = self._generation.settings.limits.max_connections
        return cap is None or self._open < cap

    def _give_back(self, client: httpx.Client, generation: _Generation) -> None:
        with self._lock:
            keepalive = generation.settings.limits.max_keepalive_connections
            keep = generation is self._generation and (
                keepalive is None or len(self._idle) < keepalive
            )
            if keep:
                self._idle.append(client)
            else:
                self._open -= 1
            self._returned.notify()
        if not keep:
            client.close()

    def _build(self, generation: _Generation) -> httpx.Client:
        settings = generation.settings
        return httpx.Client(
            base_url=settings.base_url,
            headers=dict(settings.headers),
            timeout=settings.timeout,
            limits=httpx.Limits(
                max_connections=1,
                max_keepalive_connections=1,
                keepalive_expiry=settings.limits.keepalive_expiry,
            ),
            verify=generation.ssl_context(),
            auth=settings.auth,
            transport=self._transport,
        )


class _Generation:
    """One settings value of a :class:`PooledClient`, and the TLS context all its clients share.

    httpx builds an SSL context per client (milliseconds, and a CA bundle read), too much for a
    pool that builds many; this builds it once, on first use.
    """

    def __init__(self, settings: HttpSettings, provider: str) -> None:
        self.settings = settings
        self._provider = provider
        self._context: ssl.SSLContext | None = None
        # Apart from the pool's lock, so a request that finds an idle client never waits here.
        self._lock = threading.Lock()

    def ssl_context(self) -> ssl.SSLContext:
        """The context, loaded on the first call.

        Raises
        ------
        InvalidConfig
            The client certificate or CA bundle cannot be loaded; the next call tries again.
        """
        with self._lock:
            if self._context is None:
                self._context = _ssl_context(self.settings, self._provider)
            return self._context


class _SharedTransport(httpx.BaseTransport):
    """An injected transport lent to every client: closing one client must not close it."""

    def __init__(self, transport: httpx.BaseTransport) -> None:
        self._transport = transport

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._transport.handle_request(request)


def _ssl_context(settings: HttpSettings, provider: str) -> ssl.SSLContext:
    # httpx 0.28 deprecates `cert=` and string `verify=`; an SSLContext is the supported way.
    try:
        if isinstance(settings.verify, Path):
            context = ssl.create_default_context(cafile=str(settings.verify))
        else:
            # What httpx.Client(verify=bool) builds, so the system bundle is found the same way.
            context = httpx.create_ssl_context(verify=settings.verify)
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
