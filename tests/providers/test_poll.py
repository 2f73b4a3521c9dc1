"""The poll helper: backoff, jitter, Retry-After, the deadline, against the platforms' wire shapes.

Most tests run on a clock the test owns (its sleep moves time on), so they wait for nothing;
two run on the system clock against a real local HTTP server with short deadlines.
"""

from __future__ import annotations

import http.server
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from pydantic import BaseModel, ConfigDict

from providers._http import parse_retry_after, raise_for_status, read_nested_error
from providers._poll import SYSTEM_CLOCK, Pending, PollPolicy, poll_until
from providers._pool import HttpSettings, PooledClient
from providers._replies import OptionalText, parse_reply
from providers.errors import (
    FaasError,
    FaasTimeout,
    InfrastructureError,
    NotDeployed,
    PermanentInfrastructureError,
)

PROVIDER = "test"
ROOT = Path(__file__).resolve().parents[2]


class _Clock:
    """Monotonic time that moves only when the poll sleeps."""

    def __init__(self) -> None:
        self.now_s = 100.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now_s

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.now_s += seconds


def _steps(*outcomes: object) -> Callable[[], Any]:
    remaining = list(outcomes)

    def step() -> Any:
        outcome = remaining.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    return step


NO_JITTER = PollPolicy(timeout_s=60, first_delay_s=1, max_delay_s=8, jitter=0)


def test_a_condition_that_already_holds_returns_at_once() -> None:
    clock = _Clock()

    assert poll_until(_steps("done"), what="x", provider=PROVIDER, clock=clock) == "done"
    assert clock.sleeps == []


def test_waits_grow_by_the_multiplier_up_to_the_cap() -> None:
    clock = _Clock()
    step = _steps(*[Pending()] * 6, "done")

    result = poll_until(step, what="x", provider=PROVIDER, policy=NO_JITTER, clock=clock)

    assert result == "done"
    assert clock.sleeps == [1, 2, 4, 8, 8, 8]


def test_jitter_takes_up_to_its_fraction_off_each_wait() -> None:
    clock = _Clock()
    policy = PollPolicy(timeout_s=60, first_delay_s=1, max_delay_s=8, jitter=0.5)
    fractions = iter([0.0, 0.5, 0.999])

    poll_until(
        _steps(Pending(), Pending(), Pending(), "done"),
        what="x",
        provider=PROVIDER,
        policy=policy,
        clock=clock,
        random_fraction=lambda: next(fractions),
    )

    assert clock.sleeps == [1.0, 1.5, pytest.approx(2.002)]


def test_random_jitter_stays_within_its_bounds() -> None:
    policy = PollPolicy(timeout_s=600, first_delay_s=2, max_delay_s=2, jitter=0.25)
    clock = _Clock()

    poll_until(
        _steps(*[Pending()] * 50, "done"), what="x", provider=PROVIDER, policy=policy, clock=clock
    )

    assert all(1.5 <= wait <= 2.0 for wait in clock.sleeps)
    assert len(set(clock.sleeps)) > 1


def test_a_retry_after_hint_replaces_the_backoff_even_past_the_cap() -> None:
    clock = _Clock()
    step = _steps(Pending(retry_after_s=5), Pending(retry_after_s=20), Pending(), "done")

    poll_until(step, what="x", provider=PROVIDER, policy=NO_JITTER, clock=clock)

    # The backoff goes on counting under the hints: the third wait is the third step's.
    assert clock.sleeps == [5, 20, 4]


def test_a_retry_after_of_zero_is_floored_at_the_first_delay() -> None:
    clock = _Clock()

    poll_until(
        _steps(Pending(retry_after_s=0), "done"),
        what="x",
        provider=PROVIDER,
        policy=NO_JITTER,
        clock=clock,
    )

    assert clock.sleeps == [1]


def test_the_deadline_raises_a_timeout_saying_what_was_awaited_and_last_seen() -> None:
    clock = _Clock()
    policy = PollPolicy(timeout_s=10, first_delay_s=1, max_delay_s=8, jitter=0)

    def step() -> Pending:
        return Pending(seen="stage BUILD IN_PROGRESS", retry_after_s=None)

    with pytest.raises(FaasTimeout) as caught:
        poll_until(
            step, what="operation op-1 to finish", provider="gcp", policy=policy, clock=clock
        )

    error = caught.value
    assert error.provider == "gcp"
    assert error.retryable is True
    assert "operation op-1 to finish" in error.message
    assert "stage BUILD IN_PROGRESS" in error.message
    # 1 + 2 + 4 = 7, then the last wait ends at the deadline, for one last step.
    assert clock.sleeps == [1, 2, 4, 3]
    assert clock.now_s == 110.0


def test_a_hint_past_the_deadline_is_cut_to_it_and_kept_on_the_timeout() -> None:
    clock = _Clock()
    policy = PollPolicy(timeout_s=10, first_delay_s=1, jitter=0)

    with pytest.raises(FaasTimeout) as caught:
        poll_until(
            lambda: Pending(retry_after_s=60), what="x", provider=PROVIDER, policy=policy,
            clock=clock,
        )  # fmt: skip

    assert clock.sleeps == [10]
    assert caught.value.retry_after_s == 60


def test_what_a_step_raises_goes_through_at_once() -> None:
    clock = _Clock()
    failed = PermanentInfrastructureError("the operation failed", provider=PROVIDER)

    with pytest.raises(InfrastructureError) as caught:
        poll_until(_steps(Pending(), failed), what="x", provider=PROVIDER, clock=clock)

    assert caught.value is failed
    assert len(clock.sleeps) == 1


@pytest.mark.parametrize(
    "options",
    [
        {"timeout_s": 0},
        {"timeout_s": 10, "first_delay_s": 0},
        {"timeout_s": 10, "first_delay_s": 5, "max_delay_s": 1},
        {"timeout_s": 10, "multiplier": 0.5},
        {"timeout_s": 10, "jitter": 1.0},
        {"timeout_s": 10, "jitter": -0.1},
    ],
)
def test_a_policy_out_of_range_is_refused(options: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        PollPolicy(**options)


# -- the platforms' documented shapes, replayed by a MockTransport ------------------------


class _Script:
    """Answers each request with the next response of a list, and records the requests."""

    def __init__(self, *responses: httpx.Response) -> None:
        self.responses = list(responses)
        self.seen: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        return self.responses.pop(0)

    def pool(self, base_url: str) -> PooledClient:
        return PooledClient(
            HttpSettings(base_url=base_url), provider=PROVIDER, transport=httpx.MockTransport(self)
        )


class _RpcStatus(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: int | None = None
    message: OptionalText = None


class _Operation(BaseModel):
    """google.longrunning.Operation: neither error nor response is set before done."""

    model_config = ConfigDict(strict=True, frozen=True)

    name: str
    done: bool = False
    error: _RpcStatus | None = None
    response: dict[str, Any] | None = None


def test_a_gcp_operation_is_polled_until_done_and_its_response_returned() -> None:
    name = "projects/p/locations/us-central1/operations/op-1"
    script = _Script(
        httpx.Response(200, json={"name": name, "metadata": {"verb": "create"}}),
        httpx.Response(200, json={"name": name, "done": False}),
        httpx.Response(200, json={"name": name, "done": True, "response": {"state": "ACTIVE"}}),
    )
    pool = script.pool("https://cloudfunctions.googleapis.com")
    clock = _Clock()

    def step() -> dict[str, Any] | Pending:
        response = pool.request("GET", f"/v2/{name}")
        raise_for_status(response, provider=PROVIDER, error_body=read_nested_error)
        operation = parse_reply(_Operation, response, provider=PROVIDER)
        if not operation.done:
            return Pending(seen="not done")
        if operation.error is not None:
            raise PermanentInfrastructureError(str(operation.error.message), provider=PROVIDER)
        return operation.response or {}

    result = poll_until(
        step, what=f"operation {name}", provider=PROVIDER, policy=NO_JITTER, clock=clock
    )

    assert result == {"state": "ACTIVE"}
    assert len(script.seen) == 3
    assert clock.sleeps == [1, 2]


def test_a_gcp_operation_done_with_an_error_raises_from_the_step() -> None:
    name = "projects/p/locations/l/operations/op-2"
    done = {"name": name, "done": True, "error": {"code": 6, "message": "ALREADY_EXISTS"}}
    pool = _Script(httpx.Response(200, json=done)).pool("https://cloudfunctions.googleapis.com")

    def step() -> object:
        operation = parse_reply(_Operation, pool.request("GET", f"/v2/{name}"), provider=PROVIDER)
        if operation.error is not None:
            raise PermanentInfrastructureError(f"{operation.error.message}", provider=PROVIDER)
        return operation

    with pytest.raises(InfrastructureError, match="ALREADY_EXISTS"):
        poll_until(step, what="x", provider=PROVIDER, clock=_Clock())


class _AsyncOperation(BaseModel):
    """ARM's Azure-AsyncOperation status body."""

    model_config = ConfigDict(strict=True, frozen=True)

    status: str


def test_an_azure_async_operation_waits_its_retry_after_between_polls() -> None:
    status_url = "https://management.azure.com/subscriptions/s/providers/Microsoft.Web/locations/w/operationResults/1"
    script = _Script(
        httpx.Response(202, json={"status": "InProgress"}, headers={"Retry-After": "15"}),
        httpx.Response(200, json={"status": "InProgress"}, headers={"Retry-After": "10"}),
        httpx.Response(200, json={"status": "Succeeded"}),
    )
    pool = script.pool("https://management.azure.com")
    clock = _Clock()
    policy = PollPolicy(timeout_s=120, first_delay_s=1, jitter=0)

    def step() -> str | Pending:
        response = pool.request("GET", status_url)
        raise_for_status(response, provider=PROVIDER, error_body=read_nested_error)
        status = parse_reply(_AsyncOperation, response, provider=PROVIDER).status
        if status in ("Succeeded", "Failed", "Canceled"):
            return status
        return Pending(
            seen=status, retry_after_s=parse_retry_after(response.headers.get("retry-after"))
        )

    assert poll_until(step, what="x", provider=PROVIDER, policy=policy, clock=clock) == "Succeeded"
    assert clock.sleeps == [15, 10]


def test_an_openwhisk_activation_is_polled_through_its_404s() -> None:
    record = {"activationId": "a1", "response": {"status": "success", "success": True}}
    script = _Script(
        httpx.Response(404, json={"error": "The requested resource does not exist.", "code": "x"}),
        httpx.Response(404, json={"error": "The requested resource does not exist.", "code": "x"}),
        httpx.Response(200, json=record),
    )
    pool = script.pool("https://faas-ams3.doserverless.co")
    clock = _Clock()

    def step() -> dict[str, Any] | Pending:
        response = pool.request("GET", "/api/v1/namespaces/_/activations/a1")
        try:
            raise_for_status(response, provider=PROVIDER)
        except NotDeployed:
            return Pending(seen="no record yet")
        body: dict[str, Any] = response.json()
        return body

    result = poll_until(
        step, what="activation a1", provider=PROVIDER, policy=NO_JITTER, clock=clock
    )

    assert result["response"]["success"] is True
    assert clock.sleeps == [1, 2]


# -- the system clock, against a real local server ----------------------------------------


class _Operations(http.server.BaseHTTPRequestHandler):
    """``GET /op/<n>``: 202 with ``Retry-After: 0`` until the n-th request, then 200."""

    polls: ClassVar[dict[str, int]] = {}
    lock = threading.Lock()

    def do_GET(self) -> None:
        with self.lock:
            count = self.polls[self.path] = self.polls.get(self.path, 0) + 1
        ready = count >= int(self.path.rsplit("/", 1)[1])
        body = b'{"status": "Succeeded"}' if ready else b'{"status": "InProgress"}'
        self.send_response(200 if ready else 202)
        self.send_header("Retry-After", "0")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return None


@pytest.fixture(scope="module")
def operations_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Operations)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def _status_step(pool: PooledClient, path: str) -> Callable[[], str | Pending]:
    def step() -> str | Pending:
        response = pool.request("GET", path)
        if response.status_code == 202:
            return Pending(retry_after_s=parse_retry_after(response.headers.get("retry-after")))
        return str(response.json()["status"])

    return step


def test_on_the_system_clock_a_real_operation_is_awaited(operations_url: str) -> None:
    pool = PooledClient(HttpSettings(base_url=operations_url), provider=PROVIDER)
    policy = PollPolicy(timeout_s=10, first_delay_s=0.02, jitter=0)
    started = time.monotonic()

    result = poll_until(
        _status_step(pool, "/op/4"), what="op 4", provider=PROVIDER, policy=policy,
        clock=SYSTEM_CLOCK,
    )  # fmt: skip

    assert result == "Succeeded"
    assert _Operations.polls["/op/4"] == 4
    # Three waits, each floored at 20 ms although the server said 0.
    assert time.monotonic() - started >= 0.06


def test_on_the_system_clock_a_short_deadline_gives_up_in_time(operations_url: str) -> None:
    pool = PooledClient(HttpSettings(base_url=operations_url), provider=PROVIDER)
    policy = PollPolicy(timeout_s=0.3, first_delay_s=0.05, jitter=0)
    started = time.monotonic()

    with pytest.raises(FaasTimeout, match="op 1000"):
        poll_until(_status_step(pool, "/op/1000"), what="op 1000", provider=PROVIDER, policy=policy)

    elapsed_s = time.monotonic() - started
    assert 0.3 <= elapsed_s < 5.0
    assert _Operations.polls["/op/1000"] >= 2


# -- the guard ---------------------------------------------------------------------------


def test_nothing_in_providers_sleeps_but_the_poll_clock() -> None:
    """Waits go through the poll helper's clock, never a fixed sleep in a provider."""
    sleeping = re.compile(r"\btime\.sleep\(|\bfrom time import .*\bsleep\b")
    offenders = [
        str(path.relative_to(ROOT))
        for path in sorted((ROOT / "providers").rglob("*.py"))
        for line in path.read_text().splitlines()
        if sleeping.search(line)
    ]

    # The one sleep is the system clock's, which every wait goes through.
    assert offenders == ["providers/_poll.py"]


def test_the_timeout_is_a_faas_error_a_worker_retries() -> None:
    with pytest.raises(FaasError) as caught:
        poll_until(
            lambda: Pending(), what="x", provider=PROVIDER,
            policy=PollPolicy(timeout_s=1, jitter=0), clock=_Clock(),
        )  # fmt: skip

    assert isinstance(caught.value, FaasTimeout)
    assert caught.value.retryable is True
