"""The shared HTTP error mapping: statuses, error bodies, transport errors, Retry-After, secrets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from providers._http import (
    MAX_ERROR_MESSAGE_CHARS,
    STATUS_ERRORS,
    absolute_http_url,
    error_for_response,
    map_transport_errors,
    parse_retry_after,
    raise_for_status,
    read_flat_error,
    read_nested_error,
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
    PermanentFaasError,
    PermanentInfrastructureError,
    SerializationError,
    Throttled,
    TransientFaasError,
    TransientInfrastructureError,
)

PROVIDER = "test"
SECRET = "s3cr3t-token-value"

# Every status of the table with the kind and retryability it must produce.
EXPECTED_STATUS_ERRORS: dict[int, tuple[type[FaasError], bool]] = {
    400: (PermanentInfrastructureError, False),
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

    assert type(error) is TransientInfrastructureError
    assert error.retryable is True


@pytest.mark.parametrize("status", [302, 405, 410, 422])
def test_any_other_unlisted_status_is_a_permanent_infrastructure_error(status: int) -> None:
    error = _raised(_response(status))

    assert type(error) is PermanentInfrastructureError
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


def test_a_permanent_error_ignores_retry_after_and_a_transient_one_keeps_it() -> None:
    permanent = _raised(_response(404, headers={"Retry-After": "5"}))
    transient = _raised(_response(500, headers={"Retry-After": "5"}))

    assert permanent.retry_after_s is None
    assert transient.retry_after_s == 5.0


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


# -- error bodies of other shapes, and per-call rules ---------------------------------------

# Google APIs answer errors as google.rpc.Status under "error" (Cloud Functions v2 REST).
GOOGLE_NOT_FOUND = {
    "error": {
        "code": 404,
        "message": "Function blueprint-job-7 does not exist in region us-central1",
        "status": "NOT_FOUND",
    }
}
# Azure Resource Manager's error response: {"error": {"code", "message"}}.
ARM_CONFLICT = {
    "error": {
        "code": "Conflict",
        "message": "Cannot modify this site because another operation is in progress.",
    }
}


def test_a_google_error_body_gives_its_status_name_and_message() -> None:
    error = _raised(_response(404, json=GOOGLE_NOT_FOUND), error_body=read_nested_error)

    assert type(error) is NotDeployed
    assert "HTTP 404: [NOT_FOUND] Function blueprint-job-7 does not exist" in error.message


def test_an_arm_error_body_gives_its_code_and_message() -> None:
    body = {"error": {"code": "AuthorizationFailed", "message": "The client does not have it."}}

    error = _raised(_response(403, json=body), error_body=read_nested_error)

    assert type(error) is AuthError
    assert "[AuthorizationFailed] The client does not have it." in error.message


def test_arm_409_in_progress_is_retryable_with_its_retry_after_through_an_override() -> None:
    response = _response(409, json=ARM_CONFLICT, headers={"Retry-After": "15"})
    in_progress = {409: TransientInfrastructureError}

    error = _raised(response, overrides=in_progress, error_body=read_nested_error)

    assert type(error) is TransientInfrastructureError
    assert error.retryable is True
    assert error.retry_after_s == 15.0
    assert "[Conflict] Cannot modify this site" in error.message


def test_without_the_override_an_arm_409_is_already_deployed_and_ignores_retry_after() -> None:
    response = _response(409, json=ARM_CONFLICT, headers={"Retry-After": "15"})

    error = _raised(response, error_body=read_nested_error)

    assert type(error) is AlreadyDeployed
    assert error.retry_after_s is None


def test_an_override_may_also_make_a_status_permanent() -> None:
    error = _raised(_response(500), overrides={500: PermanentInfrastructureError})

    assert error.retryable is False
    assert isinstance(error, InfrastructureError)


STATUSES = [*range(400, 432), *range(500, 512), 599]


@pytest.mark.parametrize("status", STATUSES)
def test_the_family_of_every_status_error_is_its_retryability(status: int) -> None:
    for overrides in (None, {400: InvalidConfig, 409: TransientInfrastructureError}):
        error = _raised(_response(status, headers={"Retry-After": "3"}), overrides=overrides)

        assert isinstance(error, TransientFaasError) == error.retryable
        assert isinstance(error, PermanentFaasError) != error.retryable
        assert (error.retry_after_s == 3.0) == error.retryable


def test_the_contract_reader_says_nothing_of_a_nested_body_and_the_reverse() -> None:
    assert read_flat_error(GOOGLE_NOT_FOUND) is None
    assert read_nested_error({"error": "missing", "code": "FUNCTION_NOT_FOUND"}) is None
    assert read_nested_error([1, 2]) is None


def test_a_nested_body_of_the_wrong_shape_leaves_the_message_bare() -> None:
    error = _raised(_response(404, json={"error": "flat"}), error_body=read_nested_error)

    assert error.message.endswith("HTTP 404")


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        ({"error": "boom", "code": "X", "details": {"a": 1}}, "X", "boom"),
        ({"error": "boom", "code": 5}, None, "boom"),
        ({"code": "ONLY_CODE"}, "ONLY_CODE", None),
    ],
)
def test_the_contract_reader_takes_what_is_readable(
    body: dict[str, object], code: str | None, message: str | None
) -> None:
    detail = read_flat_error(body)

    assert detail is not None
    assert (detail.code, detail.message) == (code, message)


def test_a_google_numeric_code_alone_is_not_taken_for_a_name() -> None:
    detail = read_nested_error({"error": {"code": 429, "message": "Quota exceeded"}})

    assert detail is not None
    assert (detail.code, detail.message) == (None, "Quota exceeded")


def test_only_absolute_http_urls_are_taken_and_a_refusal_does_not_quote_the_url() -> None:
    assert absolute_http_url("https://faas.example:8443/x") == "https://faas.example:8443/x"
    for url in ("ftp://user:hunter2@faas.example", "/api/functions", "http://"):
        with pytest.raises(ValueError) as refused:
            absolute_http_url(url)
        assert "hunter2" not in str(refused.value)
