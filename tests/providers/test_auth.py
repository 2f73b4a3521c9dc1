"""The auth flows, through the shared pool and a MockTransport that plays the server.

The server's side checks each request's credential as a platform would; the token sources
count their calls, which is what "one refresh, not N" is about.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from providers._auth import (
    DEFAULT_REFRESH_MARGIN_S,
    BearerTokenAuth,
    Credential,
    FunctionKeyAuth,
    HeaderAuth,
)
from providers._http import raise_for_status
from providers._pool import HttpSettings, PooledClient
from providers.errors import AuthError, FaasError, TransientInfrastructureError

PROVIDER = "test"
NOW_S = 1_700_000_000.0
HOUR_S = 3600.0
THREADS = 16
JOIN_TIMEOUT_S = 10.0


class _Clock:
    """Unix time the test moves."""

    def __init__(self) -> None:
        self.now_s = NOW_S

    def __call__(self) -> float:
        return self.now_s


class _Tokens:
    """A token source handing out token-1, token-2, ..., each valid for an hour.

    With ``linger_s``, a call stays in the source until a second call comes in or the time is
    up, as a slow token endpoint would: threads that do not wait for the first fetch all come
    in then, and the count shows it.
    """

    def __init__(self, clock: _Clock, lifetime_s: float = HOUR_S, linger_s: float = 0.0) -> None:
        self.clock = clock
        self.lifetime_s = lifetime_s
        self.linger_s = linger_s
        self.calls = 0
        self._lock = threading.Lock()
        self._overlap = threading.Event()
        self._inside = 0

    def __call__(self) -> Credential:
        with self._lock:
            self.calls += 1
            token = f"token-{self.calls}", self.clock() + self.lifetime_s
            self._inside += 1
            if self._inside > 1:
                self._overlap.set()
        self._overlap.wait(self.linger_s)
        with self._lock:
            self._inside -= 1
        return token


class _Server:
    """Accepts the credentials in ``valid``; answers 401 (or ``refusal``) to any other.

    ``hold`` makes the first ``hold`` requests wait for each other before any is answered,
    so they all carry the credential they were given at the same moment.
    """

    def __init__(
        self,
        valid: Iterable[str],
        *,
        header: str = "Authorization",
        refusal: int = 401,
        hold: int = 0,
    ) -> None:
        self.valid = set(valid)
        self.header = header
        self.refusal = refusal
        # What each request carried when it arrived: a retried request is the same object
        # with its header replaced.
        self.received: list[tuple[str | None, bytes]] = []
        self._lock = threading.Lock()
        self._barrier: threading.Barrier | None = None
        self._held = 0
        if hold:
            self.hold_next(hold)

    def hold_next(self, count: int) -> None:
        """Hold the next ``count`` requests until all of them have arrived."""
        with self._lock:
            self._barrier = threading.Barrier(count, timeout=JOIN_TIMEOUT_S)
            self._held = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        credential = request.headers.get(self.header)
        with self._lock:
            self.received.append((credential, request.content))
            self._held += 1
            wait = self._barrier is not None and self._held <= self._barrier.parties
        if wait:
            assert self._barrier is not None
            self._barrier.wait()
        if credential in self.valid:
            return httpx.Response(200, json={"ok": True})
        return httpx.Response(self.refusal, json={"error": f"refused {credential}"})

    def credentials(self) -> list[str | None]:
        return [credential for credential, _ in self.received]


def _pool(auth: httpx.Auth, server: _Server) -> PooledClient:
    settings = HttpSettings(base_url="https://api.example.com", auth=auth)
    return PooledClient(settings, provider=PROVIDER, transport=httpx.MockTransport(server))


def _in_threads(count: int, call: Callable[[], httpx.Response]) -> list[int]:
    statuses: list[int] = []
    lock = threading.Lock()

    def run() -> None:
        status = call().status_code
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=JOIN_TIMEOUT_S)
    assert not any(thread.is_alive() for thread in threads)
    return statuses


# -- a static header ------------------------------------------------------------------------


def test_a_static_header_goes_on_every_request_and_not_in_the_repr() -> None:
    server = _Server({"Bearer do-token-123"})
    pool = _pool(HeaderAuth("Authorization", "Bearer do-token-123"), server)

    assert pool.request("GET", "/v2/functions/namespaces").status_code == 200
    assert pool.request("GET", "/v2/functions/namespaces").status_code == 200

    assert server.credentials() == ["Bearer do-token-123"] * 2
    assert "do-token-123" not in repr(pool.settings.auth)
    assert "do-token-123" not in repr(pool)


def test_httpx_basic_auth_serves_openwhisk_through_the_pool() -> None:
    expected = "Basic " + base64.b64encode(b"ns-uuid:ns-key-secret").decode()
    server = _Server({expected})
    pool = _pool(httpx.BasicAuth("ns-uuid", "ns-key-secret"), server)

    assert pool.request("POST", "/api/v1/namespaces/_/actions/f").status_code == 200
    assert "ns-key-secret" not in repr(pool)


# -- a bearer token with expiry -------------------------------------------------------------


def test_a_token_is_fetched_on_first_use_and_then_reused() -> None:
    clock = _Clock()
    tokens = _Tokens(clock)
    server = _Server({"Bearer token-1"})
    pool = _pool(BearerTokenAuth(tokens, provider=PROVIDER, clock=clock), server)

    for _ in range(3):
        assert pool.request("GET", "/r").status_code == 200

    assert tokens.calls == 1
    assert server.credentials() == ["Bearer token-1"] * 3


def test_a_token_is_replaced_shortly_before_it_expires_and_not_earlier() -> None:
    clock = _Clock()
    tokens = _Tokens(clock)
    server = _Server({"Bearer token-1", "Bearer token-2"})
    pool = _pool(BearerTokenAuth(tokens, provider=PROVIDER, clock=clock), server)
    pool.request("GET", "/r")

    clock.now_s = NOW_S + HOUR_S - DEFAULT_REFRESH_MARGIN_S - 1
    pool.request("GET", "/r")
    assert tokens.calls == 1

    clock.now_s = NOW_S + HOUR_S - DEFAULT_REFRESH_MARGIN_S
    pool.request("GET", "/r")
    assert tokens.calls == 2
    assert server.credentials()[-1] == "Bearer token-2"


def test_a_401_fetches_a_new_token_once_and_resends_the_request_with_its_body() -> None:
    clock = _Clock()
    tokens = _Tokens(clock)
    server = _Server({"Bearer token-2"})  # the server revoked token-1 early
    pool = _pool(BearerTokenAuth(tokens, provider=PROVIDER, clock=clock), server)

    response = pool.request("POST", "/invoke", content=b"payload")

    assert response.status_code == 200
    assert tokens.calls == 2
    assert server.credentials() == ["Bearer token-1", "Bearer token-2"]
    assert [content for _, content in server.received] == [b"payload", b"payload"]


def test_a_second_401_is_answered_to_the_caller_without_a_third_try() -> None:
    clock = _Clock()
    tokens = _Tokens(clock)
    server = _Server(set())
    pool = _pool(BearerTokenAuth(tokens, provider=PROVIDER, clock=clock), server)

    response = pool.request("GET", "/r")

    assert response.status_code == 401
    assert len(server.received) == 2
    assert tokens.calls == 2


def test_a_403_is_not_a_reason_to_refresh_a_bearer_token() -> None:
    clock = _Clock()
    tokens = _Tokens(clock)
    server = _Server(set(), refusal=403)
    pool = _pool(BearerTokenAuth(tokens, provider=PROVIDER, clock=clock), server)

    assert pool.request("GET", "/r").status_code == 403
    assert tokens.calls == 1


def test_threads_that_all_start_without_a_token_fetch_it_once() -> None:
    clock = _Clock()
    tokens = _Tokens(clock, linger_s=0.3)
    server = _Server({"Bearer token-1"}, hold=THREADS)
    pool = _pool(BearerTokenAuth(tokens, provider=PROVIDER, clock=clock), server)

    statuses = _in_threads(THREADS, lambda: pool.request("GET", "/r"))

    assert statuses == [200] * THREADS
    assert tokens.calls == 1


def test_threads_all_refused_with_the_same_token_refresh_it_once() -> None:
    clock = _Clock()
    tokens = _Tokens(clock)
    pool_auth = BearerTokenAuth(tokens, provider=PROVIDER, clock=clock)
    # Every thread's first request carries token-1 and is held until all have arrived, so
    # all 16 are refused with the same token at about the same moment.
    server = _Server({"Bearer token-2"}, hold=THREADS)
    pool = _pool(pool_auth, server)

    statuses = _in_threads(THREADS, lambda: pool.request("GET", "/r"))

    assert statuses == [200] * THREADS
    assert tokens.calls == 2
    assert server.credentials().count("Bearer token-1") == THREADS
    assert server.credentials().count("Bearer token-2") == THREADS


def test_threads_that_find_the_token_expiring_refresh_it_once() -> None:
    clock = _Clock()
    tokens = _Tokens(clock, linger_s=0.3)
    server = _Server({"Bearer token-1", "Bearer token-2"})
    pool = _pool(BearerTokenAuth(tokens, provider=PROVIDER, clock=clock), server)
    clock.now_s = NOW_S - HOUR_S  # token-1 is fetched an hour "before now"...
    assert pool.request("GET", "/r").status_code == 200
    clock.now_s = NOW_S  # ...so by now it has expired
    server.hold_next(THREADS)

    statuses = _in_threads(THREADS, lambda: pool.request("GET", "/r"))

    assert statuses == [200] * THREADS
    assert server.credentials()[1:] == ["Bearer token-2"] * THREADS
    assert tokens.calls == 2


@pytest.mark.parametrize(
    "expiry",
    [
        datetime.fromtimestamp(NOW_S + 60, UTC),
        datetime.fromtimestamp(NOW_S + 60, UTC).replace(tzinfo=None),  # google-auth's naive UTC
        NOW_S + 60,
        int(NOW_S + 60),  # azure-identity's expires_on
    ],
)
def test_an_expiry_may_be_a_datetime_or_unix_seconds(expiry: datetime | float) -> None:
    clock = _Clock()
    calls: list[int] = []

    def source() -> Credential:
        calls.append(1)
        return "token", expiry

    pool = _pool(
        BearerTokenAuth(source, provider=PROVIDER, refresh_margin_s=30, clock=clock),
        _Server({"Bearer token"}),
    )
    pool.request("GET", "/r")
    clock.now_s = NOW_S + 29
    pool.request("GET", "/r")
    assert len(calls) == 1
    clock.now_s = NOW_S + 31
    pool.request("GET", "/r")
    assert len(calls) == 2


def test_a_token_without_expiry_is_kept_until_refused() -> None:
    clock = _Clock()
    calls: list[int] = []

    def source() -> Credential:
        calls.append(1)
        return "static-token", None

    pool = _pool(
        BearerTokenAuth(source, provider=PROVIDER, clock=clock), _Server({"Bearer static-token"})
    )
    pool.request("GET", "/r")
    clock.now_s = NOW_S + 10 * 365 * 24 * HOUR_S
    pool.request("GET", "/r")

    assert len(calls) == 1


def test_a_failing_source_is_an_auth_error_that_does_not_quote_it() -> None:
    def source() -> Credential:
        raise RuntimeError("metadata server said: secret-in-message")

    pool = _pool(BearerTokenAuth(source, provider=PROVIDER), _Server(set()))

    with pytest.raises(AuthError) as caught:
        pool.request("GET", "/r")

    assert caught.value.provider == PROVIDER
    assert "RuntimeError" in caught.value.message
    assert "secret-in-message" not in caught.value.message
    assert isinstance(caught.value.__cause__, RuntimeError)


def test_a_faas_error_from_the_source_goes_through_as_is() -> None:
    refused = TransientInfrastructureError("token endpoint down", provider=PROVIDER)

    def source() -> Credential:
        raise refused

    pool = _pool(BearerTokenAuth(source, provider=PROVIDER), _Server(set()))

    with pytest.raises(FaasError) as caught:
        pool.request("GET", "/r")

    assert caught.value is refused


def test_an_empty_token_is_an_auth_error() -> None:
    pool = _pool(BearerTokenAuth(lambda: ("", None), provider=PROVIDER), _Server(set()))

    with pytest.raises(AuthError):
        pool.request("GET", "/r")


def test_the_token_never_reaches_a_repr_or_an_error_echoing_it() -> None:
    clock = _Clock()
    tokens = _Tokens(clock)
    server = _Server(set())  # refuses, echoing the credential in its body
    auth = BearerTokenAuth(tokens, provider=PROVIDER, clock=clock)
    pool = _pool(auth, server)

    response = pool.request("GET", "/r")
    with pytest.raises(AuthError) as caught:
        raise_for_status(response, provider=PROVIDER)

    assert "token-2" in response.text
    for text in (repr(auth), repr(pool), caught.value.message, repr(caught.value)):
        assert "token-1" not in text and "token-2" not in text


def test_a_negative_refresh_margin_is_refused() -> None:
    with pytest.raises(ValueError):
        BearerTokenAuth(lambda: ("t", None), provider=PROVIDER, refresh_margin_s=-1)


# -- a key per function ---------------------------------------------------------------------


class _Keys:
    """Azure-like listkeys: one key per function, rotated on demand."""

    def __init__(self) -> None:
        self.generation: dict[str, int] = {}
        self.calls: list[str] = []
        self._lock = threading.Lock()

    def current(self, function: str) -> str:
        return f"key-{function}-{self.generation.get(function, 1)}"

    def rotate(self, function: str) -> None:
        self.generation[function] = self.generation.get(function, 1) + 1

    def __call__(self, function: str) -> Credential:
        with self._lock:
            self.calls.append(function)
            return self.current(function), None


def _function_of(request: httpx.Request) -> str:
    return request.url.path.removeprefix("/api/")


def test_each_function_key_is_looked_up_once_and_sent_in_x_functions_key() -> None:
    keys = _Keys()
    server = _Server({keys.current("a"), keys.current("b")}, header="x-functions-key")
    pool = _pool(FunctionKeyAuth(keys, provider=PROVIDER, function_of=_function_of), server)

    for path in ("/api/a", "/api/b", "/api/a", "/api/b"):
        assert pool.request("POST", path).status_code == 200

    assert sorted(keys.calls) == ["a", "b"]
    assert server.credentials() == ["key-a-1", "key-b-1", "key-a-1", "key-b-1"]


@pytest.mark.parametrize("refusal", [401, 403])
def test_a_refused_key_is_fetched_again_once_for_that_function_only(refusal: int) -> None:
    keys = _Keys()
    server = _Server(set(), header="x-functions-key", refusal=refusal)
    pool = _pool(FunctionKeyAuth(keys, provider=PROVIDER, function_of=_function_of), server)
    server.valid = {keys.current("a"), keys.current("b")}
    pool.request("POST", "/api/a")
    pool.request("POST", "/api/b")

    keys.rotate("a")  # someone regenerated function a's key
    server.valid = {keys.current("a"), keys.current("b")}
    assert pool.request("POST", "/api/a").status_code == 200
    assert pool.request("POST", "/api/b").status_code == 200

    assert keys.calls == ["a", "b", "a"]
    assert server.credentials()[-3:] == ["key-a-1", "key-a-2", "key-b-1"]


def test_threads_refused_with_one_function_key_fetch_it_once() -> None:
    keys = _Keys()

    def stale_first(function: str) -> Credential:
        # The first lookup hands out a key that was regenerated since; the next, the new one.
        key = keys(function)
        keys.rotate(function)
        return key

    server = _Server({"key-a-2"}, header="x-functions-key", hold=THREADS)
    pool = _pool(FunctionKeyAuth(stale_first, provider=PROVIDER, function_of=_function_of), server)

    statuses = _in_threads(THREADS, lambda: pool.request("POST", "/api/a"))

    assert statuses == [200] * THREADS
    assert keys.calls == ["a", "a"]
    assert server.credentials().count("key-a-1") == THREADS


def test_a_per_audience_id_token_is_a_bearer_header_keyed_by_origin() -> None:
    """GCP: the ID token's audience is the function's run.app URL, one token per function."""
    clock = _Clock()
    audiences: list[str] = []

    def id_token(audience: str) -> Credential:
        audiences.append(audience)
        return f"id-token-for-{audience}", clock() + HOUR_S

    def origin(request: httpx.Request) -> str:
        return f"{request.url.scheme}://{request.url.host}"

    auth = FunctionKeyAuth(
        id_token,
        provider="gcp",
        function_of=origin,
        header_name="Authorization",
        scheme="Bearer",
        refresh_on={401},
        clock=clock,
    )
    valid = {f"Bearer id-token-for-https://f{index}-abc.a.run.app" for index in (1, 2)}
    pool = _pool(auth, _Server(valid))

    for url in (
        "https://f1-abc.a.run.app/",
        "https://f2-abc.a.run.app/",
        "https://f1-abc.a.run.app/x",
    ):
        assert pool.request("POST", url).status_code == 200

    assert audiences == ["https://f1-abc.a.run.app", "https://f2-abc.a.run.app"]
    assert "id-token" not in repr(auth)


def test_function_keys_stay_out_of_the_repr() -> None:
    keys = _Keys()
    auth = FunctionKeyAuth(keys, provider=PROVIDER, function_of=_function_of)
    _pool(auth, _Server({keys.current("a")}, header="x-functions-key")).request("POST", "/api/a")

    assert "key-a" not in repr(auth)
    assert "functions_cached=1" in repr(auth)


def test_an_expiring_function_secret_is_refreshed_before_it_expires() -> None:
    clock = _Clock()
    calls: list[str] = []

    def source(function: str) -> Credential:
        calls.append(function)
        return f"k{len(calls)}", clock() + timedelta(minutes=10).total_seconds()

    auth = FunctionKeyAuth(source, provider=PROVIDER, refresh_margin_s=60, clock=clock)
    pool = _pool(auth, _Server({"k1", "k2"}, header="x-functions-key"))
    pool.request("GET", "/f")
    clock.now_s = NOW_S + 541

    assert pool.request("GET", "/f").status_code == 200
    assert calls == ["/f", "/f"]
