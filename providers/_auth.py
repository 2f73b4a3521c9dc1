"""httpx ``Auth`` flows for every provider's credentials: static headers, tokens, function keys.

A provider puts one flow in :attr:`providers._pool.HttpSettings.auth`; every client of its pool
shares it, so a token is fetched once for all of them. The flows never import a cloud SDK:
credentials come from injected callables, which adapt google-auth, azure-identity or a
DigitalOcean key in a line or two::

    BearerTokenAuth(lambda: (credential.get_token(SCOPE).token, ...), provider="azure")

- :class:`HeaderAuth`: one fixed header (a DigitalOcean API token, a static API key).
  OpenWhisk's ``uuid:key`` needs nothing of ours: it is httpx's own ``BasicAuth``.
- :class:`BearerTokenAuth`: ``Authorization: Bearer <token>`` for a token that expires (an
  ARM access token, a GCP access token), fetched again shortly before it does, and once when
  the server answers 401.
- :class:`FunctionKeyAuth`: a secret per function, looked up on first use and cached (Azure's
  ``x-functions-key``, or a GCP ID token, whose audience is the function's URL), fetched again
  once on 401 or 403.

Under concurrent threads a stale or refused secret is fetched once, not once per thread: the
fetch runs under the secret's lock, the other threads wait for it and use its result, and a
thread whose request was refused with a secret already replaced uses the replacement.

Flows hold locks and call their source, which may do I/O, so they implement httpx's
``sync_auth_flow``; executors are synchronous and never use them from an ``AsyncClient``.
Secrets appear in no repr and no error message.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Generator
from datetime import UTC, datetime
from functools import partial
from typing import TypeAlias

import httpx

from providers.errors import AuthError, FaasError

__all__ = [
    "DEFAULT_REFRESH_MARGIN_S",
    "BearerTokenAuth",
    "Credential",
    "Expiry",
    "FunctionKeyAuth",
    "HeaderAuth",
    "KeySource",
    "TokenSource",
]

#: How long before its expiry a token is fetched again. A token is checked when a request
#: starts and must outlive the request's trip to the server; google-auth uses 3 min 45 s.
DEFAULT_REFRESH_MARGIN_S = 300.0

#: When a secret stops working: Unix seconds, a datetime (naive means UTC, as google-auth's
#: ``credentials.expiry``), or None for a secret that does not expire.
Expiry: TypeAlias = float | datetime | None
#: A secret and its expiry, as a source returns them.
Credential: TypeAlias = tuple[str, Expiry]
#: Fetches the one token of a :class:`BearerTokenAuth`.
TokenSource: TypeAlias = Callable[[], Credential]
#: Fetches the secret of one function (its name, or whatever ``function_of`` returns).
KeySource: TypeAlias = Callable[[str], Credential]

_BEARER_REFRESH_ON = frozenset({401})
_KEY_REFRESH_ON = frozenset({401, 403})


class HeaderAuth(httpx.Auth):
    """Sends one fixed header with every request.

    Parameters
    ----------
    name, value:
        The header; ``value`` is a secret and never shown.
    """

    def __init__(self, name: str, value: str) -> None:
        self._name = name
        self._value = value

    def __repr__(self) -> str:
        return f"HeaderAuth(name={self._name!r})"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers[self._name] = self._value
        yield request


class _CachedSecret:
    """One secret, fetched by one thread at a time, and only when stale or refused."""

    def __init__(
        self,
        fetch: Callable[[], Credential],
        *,
        provider: str,
        refresh_margin_s: float,
        clock: Callable[[], float],
    ) -> None:
        self._fetch = fetch
        self._provider = provider
        self._refresh_margin_s = refresh_margin_s
        self._clock = clock
        self._lock = threading.Lock()
        self._secret: str | None = None
        self._expires_at_s: float | None = None

    def __repr__(self) -> str:
        return (
            f"_CachedSecret(cached={self._secret is not None}, expires_at_s={self._expires_at_s})"
        )

    def current(self) -> str:
        """The cached secret, fetched first when there is none or it expires soon."""
        with self._lock:
            if self._secret is None or self._expires_soon():
                self._refill()
            assert self._secret is not None
            return self._secret

    def replace(self, refused: str) -> str:
        """A secret other than ``refused``: fetched, unless another thread already did."""
        with self._lock:
            if self._secret is None or self._secret == refused:
                self._refill()
            assert self._secret is not None
            return self._secret

    def _expires_soon(self) -> bool:
        if self._expires_at_s is None:
            return False
        return self._clock() >= self._expires_at_s - self._refresh_margin_s

    def _refill(self) -> None:
        try:
            secret, expiry = self._fetch()
        except FaasError:
            raise
        except Exception as error:
            # The source's own message may quote what it was given; its type says enough.
            raise AuthError(
                f"cannot get credentials: the source raised {type(error).__name__}",
                provider=self._provider,
            ) from error
        if not isinstance(secret, str) or not secret:
            raise AuthError("the credential source returned no secret", provider=self._provider)
        self._secret = secret
        self._expires_at_s = _epoch_seconds(expiry)


class _CachingAuth(httpx.Auth, ABC):
    """Puts a cached secret on each request, and retries once with a fresh one when refused."""

    def __init__(
        self,
        *,
        header_name: str,
        scheme: str | None,
        refresh_on: Collection[int],
        provider: str,
        refresh_margin_s: float,
        clock: Callable[[], float],
    ) -> None:
        if refresh_margin_s < 0:
            raise ValueError(f"refresh_margin_s cannot be negative, got {refresh_margin_s}")
        self._header_name = header_name
        self._scheme = scheme
        self._refresh_on = frozenset(refresh_on)
        self._provider = provider
        self._refresh_margin_s = refresh_margin_s
        self._clock = clock

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        # The request may be sent twice, so its body must be held (a no-op for bytes).
        request.read()
        cached = self._cached_for(request)
        secret = cached.current()
        self._apply(request, secret)
        response = yield request
        if response.status_code in self._refresh_on:
            self._apply(request, cached.replace(secret))
            yield request

    # Its lock and a source doing I/O would block an event loop; no executor is async.
    async def async_auth_flow(self, request: httpx.Request) -> object:  # type: ignore[override]
        raise NotImplementedError(f"{type(self).__name__} serves synchronous clients only")

    @abstractmethod
    def _cached_for(self, request: httpx.Request) -> _CachedSecret: ...

    def _cache(self, fetch: Callable[[], Credential]) -> _CachedSecret:
        return _CachedSecret(
            fetch,
            provider=self._provider,
            refresh_margin_s=self._refresh_margin_s,
            clock=self._clock,
        )

    def _apply(self, request: httpx.Request, secret: str) -> None:
        value = secret if self._scheme is None else f"{self._scheme} {secret}"
        request.headers[self._header_name] = value


class BearerTokenAuth(_CachingAuth):
    """``Authorization: Bearer <token>`` for a token that expires, cached between requests.

    Parameters
    ----------
    token_source:
        Returns a fresh token and its expiry; called on first use, when the token is within
        ``refresh_margin_s`` of its expiry, and once after a 401. A :class:`FaasError` it
        raises goes through as is, any other exception becomes :class:`AuthError`.
    provider:
        ``provider_name`` put on the errors raised.
    refresh_margin_s:
        How long before its expiry a token is replaced.
    clock:
        Unix time now (tests move it).
    """

    def __init__(
        self,
        token_source: TokenSource,
        *,
        provider: str,
        refresh_margin_s: float = DEFAULT_REFRESH_MARGIN_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(
            header_name="Authorization",
            scheme="Bearer",
            refresh_on=_BEARER_REFRESH_ON,
            provider=provider,
            refresh_margin_s=refresh_margin_s,
            clock=clock,
        )
        self._token = self._cache(token_source)

    def __repr__(self) -> str:
        return f"BearerTokenAuth(provider={self._provider!r}, token={self._token!r})"

    def _cached_for(self, request: httpx.Request) -> _CachedSecret:
        return self._token


def _url_path(request: httpx.Request) -> str:
    return request.url.path


class FunctionKeyAuth(_CachingAuth):
    """A secret per function, looked up on first use, cached, and fetched again when refused.

    Parameters
    ----------
    key_source:
        Returns the secret of one function and its expiry (None for a key that does not
        expire); errors are treated as :class:`BearerTokenAuth`'s ``token_source``.
    provider:
        ``provider_name`` put on the errors raised.
    function_of:
        Which function a request is for, the cache key; the URL path by default. Azure's
        invoke URL is ``https://{host}/api/{route}``; a GCP ID token's audience is the URL's
        origin.
    header_name, scheme:
        Where the secret goes: ``x-functions-key: <key>`` by default, or
        ``Authorization: Bearer <id token>`` with ``scheme="Bearer"``.
    refresh_on:
        The statuses after which the function's secret is fetched again and the request sent
        once more.
    refresh_margin_s, clock:
        As :class:`BearerTokenAuth`'s, for secrets that expire.
    """

    def __init__(
        self,
        key_source: KeySource,
        *,
        provider: str,
        function_of: Callable[[httpx.Request], str] = _url_path,
        header_name: str = "x-functions-key",
        scheme: str | None = None,
        refresh_on: Collection[int] = _KEY_REFRESH_ON,
        refresh_margin_s: float = DEFAULT_REFRESH_MARGIN_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(
            header_name=header_name,
            scheme=scheme,
            refresh_on=refresh_on,
            provider=provider,
            refresh_margin_s=refresh_margin_s,
            clock=clock,
        )
        self._key_source = key_source
        self._function_of = function_of
        self._keys: dict[str, _CachedSecret] = {}
        # Guards the dict only; each function's fetch runs under its own secret's lock, so a
        # slow lookup of one function's key holds up no other function.
        self._keys_lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"FunctionKeyAuth(provider={self._provider!r}, header_name={self._header_name!r}, "
            f"functions_cached={len(self._keys)})"
        )

    def _cached_for(self, request: httpx.Request) -> _CachedSecret:
        function = self._function_of(request)
        with self._keys_lock:
            cached = self._keys.get(function)
            if cached is None:
                cached = self._keys[function] = self._cache(partial(self._key_source, function))
            return cached


def _epoch_seconds(expiry: Expiry) -> float | None:
    if expiry is None:
        return None
    if isinstance(expiry, int | float):
        return float(expiry)
    aware = expiry if expiry.tzinfo is not None else expiry.replace(tzinfo=UTC)
    return aware.timestamp()
