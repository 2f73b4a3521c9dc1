"""The shared HTTP helper: status and transport error mapping, Retry-After, secrets, pooling."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from providers import _http as http_module
from providers._http import (
    MAX_ERROR_MESSAGE_CHARS,
    STATUS_ERRORS,
    ClientCert,
    HttpSettings,
    PooledClient,
    error_for_response,
    map_transport_errors,
    parse_retry_after,
    raise_for_status,
    to_seconds,
)
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

PROVIDER = "test"
SECRET = "s3cr3t-token-value"

# Every status of the table with the kind and retryability it must produce.
EXPECTED_STATUS_ERRORS: dict[int, tuple[type[FaasError], bool]] = {
    400: (InfrastructureError, False),
    401: (AuthError, False),
    403: (AuthError, False),
    404: (NotDeployed, False),
    408: (FaasTimeout, True),
    409: (AlreadyDeployed, False),
    413: (PayloadTooLarge, False),
    429: (Throttled, True),
    503: (Throttled, True),
    504: (FaasTimeout, True),
}


def _response(
    status: int,
    *,
    json: object = None,
    text: str | None = None,
    headers: dict[str, str] | None = None,
    url: str = "https://faas.example.com/api/functions/f/invoke",
    request_headers: dict[str, str] | None = None,
) -> httpx.Response:
    request = httpx.Request("POST", url, headers=request_headers)
    if json is not None:
        return httpx.Response(status, json=json, headers=headers, request=request)
    return httpx.Response(status, text=text or "", headers=headers, request=request)


def _raised(response: httpx.Response, **kwargs: object) -> FaasError:
    with pytest.raises(FaasError) as caught:
        raise_for_status(response, provider=PROVIDER, **kwargs)  # type: ignore[arg-type]
    return caught.value


def test_every_mapped_status_is_covered_by_this_suite() -> None:
    assert set(EXPECTED_STATUS_ERRORS) == set(STATUS_ERRORS)


@pytest.mark.parametrize("status", sorted(EXPECTED_STATUS_ERRORS))
def test_a_mapped_status_raises_its_kind_with_the_status_and_provider(status: int) -> None:
    error_type, retryable = EXPECTED_STATUS_ERRORS[status]

    error = _raised(_response(status, json={"error": "nope", "code": "X"}))

    assert type(error) is error_type
    assert error.retryable is retryable
    assert error.status == status
    assert error.provider == PROVIDER


@pytest.mark.parametrize("status", [500, 502, 507, 599])
def test_an_unlisted_5xx_is_a_retryable_infrastructure_error(status: int) -> None:
    error = _raised(_response(status))

    assert type(error) is InfrastructureError
    assert error.retryable is True


@pytest.mark.parametrize("status", [302, 405, 410, 422])
def test_any_other_unlisted_status_is_a_permanent_infrastructure_error(status: int) -> None:
    error = _raised(_response(status))

    assert type(error) is InfrastructureError
    assert error.retryable is False


def test_a_2xx_raises_nothing() -> None:
    raise_for_status(_response(200), provider=PROVIDER)
    raise_for_status(_response(204), provider=PROVIDER)


def test_overrides_take_precedence_over_the_table_for_one_call() -> None:
    error = _raised(_response(400), overrides={400: InvalidConfig})

    assert type(error) is InvalidConfig
    assert error.retryable is False


def test_the_original_http_error_is_kept_as_cause() -> None:
    response = _response(404)

    error = _raised(response)

    assert isinstance(error.__cause__, httpx.HTTPStatusError)
    assert error.__cause__.response is response


@pytest.mark.parametrize("status", [429, 503])
def test_throttling_carries_retry_after_in_delta_seconds(status: int) -> None:
    error = _raised(_response(status, headers={"Retry-After": "7"}))

    assert isinstance(error, Throttled)
    assert error.retry_after_s == 7.0


def test_throttling_carries_retry_after_given_as_an_http_date() -> None:
    when = datetime.now(UTC) + timedelta(seconds=90)
    header = when.strftime("%a, %d %b %Y %H:%M:%S GMT")

    error = _raised(_response(429, headers={"Retry-After": header}))

    assert error.retry_after_s is not None
    assert 80 <= error.retry_after_s <= 90


def test_a_non_throttling_error_ignores_retry_after() -> None:
    error = _raised(_response(500, headers={"Retry-After": "5"}))

    assert error.retry_after_s is None


@pytest.mark.parametrize(
    ("header", "expected_s"),
    [
        ("0", 0.0),
        (" 120 ", 120.0),
        ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0),
        ("Wednesday, 21-Oct-15 07:28:30 GMT", 30.0),
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),
        (None, None),
        ("", None),
        ("soon", None),
        ("-5", None),
        ("1.5", None),
    ],
)
def test_retry_after_reads_both_rfc_forms_and_refuses_the_rest(
    header: str | None, expected_s: float | None
) -> None:
    now = datetime(2015, 10, 21, 7, 28, 0, tzinfo=UTC)

    assert parse_retry_after(header, now=now) == expected_s


def test_the_message_is_built_from_the_contract_error_body() -> None:
    body = {"error": "function 'f' is not deployed", "code": "FUNCTION_NOT_FOUND", "details": {}}

    error = _raised(_response(404, json=body))

    assert "HTTP 404" in error.message
    assert "[FUNCTION_NOT_FOUND] function 'f' is not deployed" in error.message
    assert "POST https://faas.example.com/api/functions/f/invoke" in error.message


def test_a_non_json_body_is_reduced_to_a_short_one_line_snippet() -> None:
    error = _raised(_response(502, text="<html>\n<body>Bad   gateway</body>\n</html>"))

    assert "<html> <body>Bad gateway</body> </html>" in error.message


def test_the_message_is_truncated() -> None:
    error = _raised(_response(500, json={"error": "x" * 10_000, "code": "BIG"}))

    assert len(error.message) <= MAX_ERROR_MESSAGE_CHARS
    assert error.message.endswith("...")


def test_the_message_leaves_out_the_query_string_and_user_info() -> None:
    url = "https://user:pw@fn.example.com/api/run?code=FUNCTION-KEY"

    error = _raised(_response(401, url=url))

    assert "FUNCTION-KEY" not in error.message
    assert "pw" not in error.message
    assert "https://fn.example.com/api/run" in error.message


def test_request_header_values_echoed_by_the_body_are_redacted() -> None:
    echo = {"error": f"bad header Authorization: Bearer {SECRET}; key {SECRET}", "code": "E"}
    headers = {"Authorization": f"Bearer {SECRET}", "X-Api-Key": "other-secret-key"}

    error = _raised(_response(403, json=echo, request_headers=headers))

    assert SECRET not in error.message
    assert SECRET not in repr(error)
    assert "[redacted]" in error.message


def test_error_for_response_builds_without_raising() -> None:
    error = error_for_response(_response(413), provider=PROVIDER)

    assert isinstance(error, PayloadTooLarge)


@pytest.mark.parametrize(
    ("exception", "error_type"),
    [
        (httpx.ConnectError("refused"), InvocationFailed),
        (httpx.ReadError("reset"), InvocationFailed),
        (httpx.WriteError("broken pipe"), InvocationFailed),
        (httpx.RemoteProtocolError("peer closed"), InvocationFailed),
        (httpx.ProxyError("proxy"), InvocationFailed),
        (httpx.TooManyRedirects("loop"), InvocationFailed),
        (httpx.ConnectTimeout("connect"), FaasTimeout),
        (httpx.ReadTimeout("read"), FaasTimeout),
        (httpx.WriteTimeout("write"), FaasTimeout),
        (httpx.PoolTimeout("pool"), FaasTimeout),
        (httpx.UnsupportedProtocol("ftp"), InvalidConfig),
        (httpx.InvalidURL("bad"), InvalidConfig),
        (httpx.DecodingError("gzip"), SerializationError),
    ],
)
def test_transport_exceptions_map_to_their_kind_with_the_original_as_cause(
    exception: Exception, error_type: type[FaasError]
) -> None:
    with (
        pytest.raises(FaasError) as caught,
        map_transport_errors(PROVIDER, "POST", "https://h/api?code=KEY"),
    ):
        raise exception

    assert type(caught.value) is error_type
    assert caught.value.__cause__ is exception
    assert caught.value.provider == PROVIDER
    assert "KEY" not in caught.value.message


def test_other_exceptions_pass_through_the_transport_mapping() -> None:
    with pytest.raises(KeyError), map_transport_errors(PROVIDER, "GET", "/x"):
        raise KeyError("not an http error")


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
    load = http_module._ssl_context

    def count(settings: HttpSettings, provider: str) -> ssl.SSLContext:
        loaded.append(settings)
        return load(settings, provider)

    monkeypatch.setattr(http_module, "_ssl_context", count)
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


@pytest.mark.parametrize(
    ("value", "expected_s"),
    [(3, 3.0), (2.5, 2.5), (timedelta(minutes=1), 60.0)],
)
def test_to_seconds_takes_numbers_and_timedeltas(value: float, expected_s: float) -> None:
    assert to_seconds(value) == expected_s


def test_to_seconds_refuses_a_negative_duration() -> None:
    with pytest.raises(ValueError):
        to_seconds(-1)
