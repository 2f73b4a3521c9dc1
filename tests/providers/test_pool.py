"""The shared connection pool: clients built lazily, reused, capped, rebuilt, TLS loaded once."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from providers import _pool as pool_module
from providers._http import map_transport_errors
from providers._pool import ClientCert, HttpSettings, PooledClient
from providers.errors import FaasError, InvalidConfig, InvocationFailed

PROVIDER = "test"
SECRET = "s3cr3t-token-value"


def test_settings_repr_names_headers_but_never_shows_their_values() -> None:
    settings = HttpSettings(headers={"Authorization": f"Bearer {SECRET}"})

    assert "Authorization" in repr(settings)
    assert SECRET not in repr(settings)


def test_with_header_replaces_a_header_whatever_its_case() -> None:
    settings = HttpSettings(headers={"authorization": "old"}).with_header("Authorization", "new")

    assert dict(settings.headers) == {"Authorization": "new"}


JOIN_TIMEOUT_S = 10.0


class _Handler:
    """A MockTransport handler that counts the requests inside it and can hold them there."""

    def __init__(self, hold: Callable[[httpx.Request], object] | None = None) -> None:
        self.seen: list[httpx.Request] = []
        self.in_flight = 0
        self.peak = 0
        self._hold = hold
        self._lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.seen.append(request)
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
        try:
            if self._hold is not None:
                self._hold(request)
        finally:
            with self._lock:
                self.in_flight -= 1
        return httpx.Response(200, json={"ok": True})

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)


class _WatchedCondition(threading.Condition):
    """The pool's condition, telling the test when a request starts waiting for a client."""

    def __init__(self, lock: threading.Lock) -> None:
        super().__init__(lock)
        self.waiting = threading.Event()

    def wait(self, timeout: float | None = None) -> bool:
        self.waiting.set()
        return super().wait(timeout)


def _pooled(handler: _Handler, **settings: Any) -> PooledClient:
    return PooledClient(HttpSettings(**settings), provider=PROVIDER, transport=handler.transport())


def _record_builds(pooled: PooledClient, monkeypatch: pytest.MonkeyPatch) -> list[httpx.Client]:
    built: list[httpx.Client] = []
    build = pooled._build

    def record(*args: Any) -> httpx.Client:
        client = build(*args)
        built.append(client)
        return client

    monkeypatch.setattr(pooled, "_build", record)
    return built


def _in_threads(count: int, call: Callable[[], object]) -> list[object]:
    """Run ``call`` in ``count`` threads; return what each returned or raised."""
    outcomes: list[object] = []
    lock = threading.Lock()

    def run() -> None:
        try:
            outcome = call()
        except Exception as error:  # handed to the test, which asserts on it
            outcome = error
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=JOIN_TIMEOUT_S)
    assert not any(thread.is_alive() for thread in threads)
    return outcomes


def _statuses(outcomes: list[object]) -> list[object]:
    # An exception stays in the list, so a failed assertion shows it.
    return [
        outcome.status_code if isinstance(outcome, httpx.Response) else outcome
        for outcome in outcomes
    ]


def _hold_path(path: str, entered: threading.Event, release: threading.Event) -> _Handler:
    def hold(request: httpx.Request) -> None:
        if request.url.path == path:
            entered.set()
            assert release.wait(JOIN_TIMEOUT_S)

    return _Handler(hold)


def test_a_client_is_built_on_first_use_and_then_reused(monkeypatch: pytest.MonkeyPatch) -> None:
    handler = _Handler()
    pooled = _pooled(handler, base_url="https://h", headers={"X-Key": "k"})
    built = _record_builds(pooled, monkeypatch)
    assert pooled._open == 0

    response = pooled.request("GET", "/a")
    pooled.request("GET", "/b")

    assert response.status_code == 200
    assert len(built) == 1
    assert pooled._idle == built
    assert [request.url.path for request in handler.seen] == ["/a", "/b"]
    assert all(request.headers["X-Key"] == "k" for request in handler.seen)


def test_racing_threads_build_one_client_per_request_in_flight_and_reuse_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    together = threading.Barrier(8, timeout=JOIN_TIMEOUT_S)
    handler = _Handler(lambda request: together.wait())
    pooled = _pooled(handler)
    built = _record_builds(pooled, monkeypatch)

    first = _in_threads(8, lambda: pooled.request("GET", "https://h/"))
    second = _in_threads(8, lambda: pooled.request("GET", "https://h/"))

    assert _statuses(first + second) == [200] * 16
    assert len(built) == 8
    assert {id(client) for client in pooled._idle} == {id(client) for client in built}


def test_the_connection_cap_holds_under_16_racing_threads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Requests leave the handler four at a time, so the cap is reached in every round.
    four_at_a_time = threading.Barrier(4, timeout=JOIN_TIMEOUT_S)
    handler = _Handler(lambda request: four_at_a_time.wait())
    pooled = _pooled(handler, limits=httpx.Limits(max_connections=4, max_keepalive_connections=4))
    built = _record_builds(pooled, monkeypatch)

    outcomes = _in_threads(16, lambda: pooled.request("GET", "https://h/"))

    assert _statuses(outcomes) == [200] * 16
    assert handler.peak == 4
    assert len(built) == 4


def test_a_request_beyond_the_cap_waits_and_gets_the_client_when_it_returns(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    entered, release = threading.Event(), threading.Event()
    handler = _hold_path("/slow", entered, release)
    pooled = _pooled(handler, limits=httpx.Limits(max_connections=1))
    built = _record_builds(pooled, monkeypatch)
    watched = _WatchedCondition(pooled._lock)
    pooled._returned = watched
    outcomes: list[object] = []

    slow = threading.Thread(target=lambda: outcomes.append(pooled.request("GET", "https://h/slow")))
    slow.start()
    assert entered.wait(JOIN_TIMEOUT_S)
    fast = threading.Thread(target=lambda: outcomes.append(pooled.request("GET", "https://h/fast")))
    fast.start()
    assert watched.waiting.wait(JOIN_TIMEOUT_S)
    assert outcomes == []
    release.set()
    for thread in (slow, fast):
        thread.join(timeout=JOIN_TIMEOUT_S)

    assert _statuses(outcomes) == [200, 200]
    assert [request.url.path for request in handler.seen] == ["/slow", "/fast"]
    assert handler.peak == 1
    assert len(built) == 1


def test_with_the_cap_reached_a_short_pool_timeout_raises_the_mapped_pool_timeout() -> None:
    entered, release = threading.Event(), threading.Event()
    handler = _hold_path("/slow", entered, release)
    pooled = _pooled(
        handler,
        timeout=httpx.Timeout(5.0, pool=0.05),
        limits=httpx.Limits(max_connections=1),
    )
    slow = threading.Thread(target=lambda: pooled.request("GET", "https://h/slow"))
    slow.start()
    assert entered.wait(JOIN_TIMEOUT_S)

    try:
        with pytest.raises(FaasError) as caught:
            pooled.request("POST", "https://h/api/functions/f/invoke?code=KEY")
    finally:
        release.set()
        slow.join(timeout=JOIN_TIMEOUT_S)

    with pytest.raises(FaasError) as mapped, map_transport_errors(PROVIDER, "POST", "/"):
        raise httpx.PoolTimeout("pool")
    assert type(caught.value) is type(mapped.value)
    assert isinstance(caught.value.__cause__, httpx.PoolTimeout)
    assert caught.value.retryable is True
    assert caught.value.provider == PROVIDER
    assert "KEY" not in caught.value.message
    assert [request.url.path for request in handler.seen] == ["/slow"]


def test_idle_clients_beyond_max_keepalive_are_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    together = threading.Barrier(5, timeout=JOIN_TIMEOUT_S)
    handler = _Handler(lambda request: together.wait())
    pooled = _pooled(
        handler, limits=httpx.Limits(max_connections=None, max_keepalive_connections=2)
    )
    built = _record_builds(pooled, monkeypatch)

    outcomes = _in_threads(5, lambda: pooled.request("GET", "https://h/"))

    assert _statuses(outcomes) == [200] * 5
    assert len(built) == 5
    assert len(pooled._idle) == 2
    assert pooled._open == 2
    assert [client.is_closed for client in built].count(True) == 3
    assert not any(client.is_closed for client in pooled._idle)


def test_configure_rebuilds_the_clients_with_the_new_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    handler = _Handler()
    pooled = _pooled(handler)
    built = _record_builds(pooled, monkeypatch)
    pooled.request("GET", "https://h/")

    pooled.configure(pooled.settings.with_header("Authorization", "Bearer new"))
    pooled.request("GET", "https://h/")

    assert len(built) == 2
    assert built[0].is_closed
    assert pooled._idle == [built[1]]
    assert "Authorization" not in handler.seen[0].headers
    assert handler.seen[1].headers["Authorization"] == "Bearer new"


def test_configure_closes_idle_clients_now_and_a_busy_one_when_it_returns(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    entered, release = threading.Event(), threading.Event()
    handler = _hold_path("/slow", entered, release)
    pooled = _pooled(handler)
    built = _record_builds(pooled, monkeypatch)
    outcomes: list[object] = []
    slow = threading.Thread(target=lambda: outcomes.append(pooled.request("GET", "https://h/slow")))
    slow.start()
    assert entered.wait(JOIN_TIMEOUT_S)
    pooled.request("GET", "https://h/fast")
    busy, idle = built

    pooled.configure(pooled.settings.with_header("Authorization", "Bearer new"))
    assert idle.is_closed
    assert not busy.is_closed
    release.set()
    slow.join(timeout=JOIN_TIMEOUT_S)

    assert _statuses(outcomes) == [200]
    assert busy.is_closed
    assert pooled._open == 0
    pooled.request("GET", "https://h/after")
    assert len(built) == 3
    assert handler.seen[-1].headers["Authorization"] == "Bearer new"


def test_one_tls_context_serves_every_client_of_a_settings_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loaded: list[HttpSettings] = []
    load = pool_module._ssl_context

    def count(settings: HttpSettings, provider: str) -> ssl.SSLContext:
        loaded.append(settings)
        return load(settings, provider)

    monkeypatch.setattr(pool_module, "_ssl_context", count)
    together = threading.Barrier(3, timeout=JOIN_TIMEOUT_S)
    pooled = _pooled(_Handler(lambda request: together.wait()))
    built = _record_builds(pooled, monkeypatch)
    assert loaded == []  # nothing is loaded before the first request

    _in_threads(3, lambda: pooled.request("GET", "https://h/"))
    pooled.configure(pooled.settings.with_header("X-Key", "k"))
    _in_threads(3, lambda: pooled.request("GET", "https://h/"))

    assert len(built) == 6
    assert [settings.headers for settings in loaded] == [{}, {"X-Key": "k"}]


def test_a_missing_client_certificate_fails_at_first_use_as_invalid_config(
    tmp_path: Path,
) -> None:
    settings = HttpSettings(
        client_cert=ClientCert(tmp_path / "missing.pem"),
        timeout=httpx.Timeout(5.0, pool=0.05),
        limits=httpx.Limits(max_connections=1),
    )
    pooled = PooledClient(settings, provider=PROVIDER)  # no I/O yet: no error

    # Twice: a failed build gives its place back, or the second would time out waiting.
    for _ in range(2):
        with pytest.raises(InvalidConfig) as caught:
            pooled.request("GET", "https://h/")
        assert caught.value.provider == PROVIDER
    assert pooled._open == 0


def test_request_maps_transport_failures() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    pooled = PooledClient(HttpSettings(), provider=PROVIDER, transport=httpx.MockTransport(refuse))

    with pytest.raises(InvocationFailed) as caught:
        pooled.request("POST", "https://h/api/functions/f/invoke")

    assert "connection refused" in caught.value.message
    assert caught.value.retryable is True


def test_a_client_whose_request_failed_goes_back_to_the_pool(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[httpx.Request] = []

    def fail_once(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            raise httpx.ReadError("connection reset", request=request)
        return httpx.Response(200)

    settings = HttpSettings(
        timeout=httpx.Timeout(5.0, pool=0.05), limits=httpx.Limits(max_connections=1)
    )
    pooled = PooledClient(settings, provider=PROVIDER, transport=httpx.MockTransport(fail_once))
    built = _record_builds(pooled, monkeypatch)

    with pytest.raises(InvocationFailed):
        pooled.request("GET", "https://h/")
    response = pooled.request("GET", "https://h/")

    assert response.status_code == 200
    assert len(built) == 1
    assert pooled._idle == built


def test_closing_the_pool_leaves_an_injected_transport_open() -> None:
    closed: list[bool] = []

    class Recording(httpx.MockTransport):
        def close(self) -> None:
            closed.append(True)

    transport = Recording(lambda request: httpx.Response(200))
    pooled = PooledClient(
        HttpSettings(limits=httpx.Limits(max_keepalive_connections=0)),
        provider=PROVIDER,
        transport=transport,
    )

    pooled.request("GET", "https://h/")  # its client is closed on return: no keep-alive
    pooled.close()

    assert closed == []
    assert pooled.request("GET", "https://h/").status_code == 200
