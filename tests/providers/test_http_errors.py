"""The shared HTTP helper: status and transport error mapping, Retry-After, secrets, pooling."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

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


def _counting_transport(seen: list[httpx.Request]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"ok": True})

    return httpx.MockTransport(handle)


def test_the_pooled_client_is_built_on_first_use_only() -> None:
    seen: list[httpx.Request] = []
    built: list[httpx.Client] = []
    pooled = PooledClient(
        HttpSettings(base_url="https://h", headers={"X-Key": "k"}),
        provider=PROVIDER,
        transport=_counting_transport(seen),
    )
    assert pooled._client is None

    response = pooled.request("GET", "/a")
    built.append(pooled.client)
    pooled.request("GET", "/b")

    assert response.status_code == 200
    assert pooled.client is built[0]
    assert [request.url.path for request in seen] == ["/a", "/b"]
    assert all(request.headers["X-Key"] == "k" for request in seen)


def test_threads_racing_for_the_client_all_get_one_instance() -> None:
    pooled = PooledClient(HttpSettings(), provider=PROVIDER, transport=_counting_transport([]))
    barrier = threading.Barrier(8)
    clients: list[httpx.Client] = []
    lock = threading.Lock()

    def grab() -> None:
        barrier.wait()
        client = pooled.client
        with lock:
            clients.append(client)

    threads = [threading.Thread(target=grab) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    assert len(clients) == 8
    assert len({id(client) for client in clients}) == 1


def test_configure_rebuilds_the_client_with_the_new_settings() -> None:
    seen: list[httpx.Request] = []
    pooled = PooledClient(HttpSettings(), provider=PROVIDER, transport=_counting_transport(seen))
    first = pooled.client

    pooled.configure(pooled.settings.with_header("Authorization", "Bearer new"))
    pooled.request("GET", "https://h/")

    assert pooled.client is not first
    assert first.is_closed
    assert seen[0].headers["Authorization"] == "Bearer new"


def test_a_missing_client_certificate_fails_at_first_use_as_invalid_config(
    tmp_path: Path,
) -> None:
    settings = HttpSettings(client_cert=ClientCert(tmp_path / "missing.pem"))
    pooled = PooledClient(settings, provider=PROVIDER)  # no I/O yet: no error

    with pytest.raises(InvalidConfig) as caught:
        pooled.request("GET", "https://h/")

    assert caught.value.provider == PROVIDER


def test_request_maps_transport_failures() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    pooled = PooledClient(HttpSettings(), provider=PROVIDER, transport=httpx.MockTransport(refuse))

    with pytest.raises(InvocationFailed) as caught:
        pooled.request("POST", "https://h/api/functions/f/invoke")

    assert "connection refused" in caught.value.message
    assert caught.value.retryable is True


@pytest.mark.parametrize(
    ("value", "expected_s"),
    [(3, 3.0), (2.5, 2.5), (timedelta(minutes=1), 60.0)],
)
def test_to_seconds_takes_numbers_and_timedeltas(value: float, expected_s: float) -> None:
    assert to_seconds(value) == expected_s


def test_to_seconds_refuses_a_negative_duration() -> None:
    with pytest.raises(ValueError):
        to_seconds(-1)
