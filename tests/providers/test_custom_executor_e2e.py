"""The Custom FaaS executor against the real reference server, started as a process."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from textwrap import dedent

import httpx
import pytest

from providers.base import FaasConfig
from providers.custom import HttpFaasExecutor
from providers.errors import (
    AuthError,
    FaasTimeout,
    FunctionError,
    InvalidConfig,
    InvocationFailed,
    NotDeployed,
)
from providers.packaging import build_custom_package, build_shell_package
from tests import faas_server

pytestmark = pytest.mark.integration

API_KEY = "e2e-secret-api-key"
_API_KEY_ENV = "BLUEPRINT_FAAS_SERVER_API_KEY"
_STOP_DEADLINE_S = 10.0

HANDLERS = dedent(
    """
    import time

    def double(payload):
        return bytes(value * 2 % 256 for value in payload)

    def reverse(payload):
        return payload[::-1]

    def fail(payload):
        raise ZeroDivisionError("the job divided by zero")

    def slow(payload):
        time.sleep(30)
        return payload
    """
)

StartServer = Callable[..., str]


@pytest.fixture(scope="module")
def start_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StartServer]:
    """Factory: start a reference server process, return its base URL; all stopped at the end."""
    with contextlib.ExitStack() as servers:

        def start(*, api_key: str | None = None) -> str:
            env = {key: value for key, value in os.environ.items() if key != _API_KEY_ENV}
            if api_key is not None:
                # The environment rather than --api-key: command lines are visible to all.
                env[_API_KEY_ENV] = api_key
            data_dir = tmp_path_factory.mktemp("faas-data")
            return servers.enter_context(faas_server.reference_server(data_dir, env=env))

        yield start


@pytest.fixture(scope="module")
def base_url(start_server: StartServer) -> str:
    return start_server()


@pytest.fixture
def executor(base_url: str) -> Iterator[HttpFaasExecutor]:
    with HttpFaasExecutor(base_url) as executor:
        yield executor


@pytest.fixture(scope="module")
def handlers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("src") / "handlers.py"
    source.write_text(HANDLERS)
    return source


@pytest.fixture(scope="module")
def package_for(handlers: Path) -> Callable[[str], bytes]:
    def build(function: str) -> bytes:
        return build_custom_package(f"handlers:{function}", sources=[handlers])

    return build


SMALL = FaasConfig(memory_mb=256, timeout_secs=10)


def test_a_deployed_python_handler_answers_with_its_result_bytes(
    executor: HttpFaasExecutor, package_for: Callable[[str], bytes]
) -> None:
    executor.deploy_job(1, package_for("double"), SMALL)

    response = executor.invoke_with_metrics(1, b"\x01\x02\x80")

    assert response.body == b"\x02\x04\x00"
    assert response.metrics.execution_ms is not None
    assert response.metrics.cold_start is True


def test_a_megabyte_payload_round_trips_through_the_platform(
    executor: HttpFaasExecutor, package_for: Callable[[str], bytes]
) -> None:
    executor.deploy_job(2, package_for("reverse"), SMALL)
    payload = os.urandom(1024 * 1024)

    assert executor.invoke(2, payload) == payload[::-1]


def test_a_failing_function_is_a_function_error(
    executor: HttpFaasExecutor, package_for: Callable[[str], bytes]
) -> None:
    executor.deploy_job(3, package_for("fail"), SMALL)

    with pytest.raises(FunctionError) as caught:
        executor.invoke(3, b"x")

    assert "ZeroDivisionError: the job divided by zero" in caught.value.message
    assert caught.value.retryable is False


def test_a_function_past_its_platform_timeout_is_a_timeout(
    executor: HttpFaasExecutor, package_for: Callable[[str], bytes]
) -> None:
    executor.deploy_job(4, package_for("slow"), FaasConfig(memory_mb=256, timeout_secs=1))

    with pytest.raises(FaasTimeout) as caught:
        executor.invoke(4, b"x")

    assert caught.value.status == 500
    assert caught.value.retryable is True


def test_an_invoke_past_the_client_read_timeout_is_a_timeout(
    base_url: str, package_for: Callable[[str], bytes]
) -> None:
    executor = HttpFaasExecutor(base_url, invoke_margin_s=0)
    # The platform kills the run at 3 s (a client disconnect does not end it sooner, and the
    # server's graceful shutdown waits for it); the worker thinks the job has 1 s.
    executor.deploy_job(5, package_for("slow"), FaasConfig(memory_mb=256, timeout_secs=3))
    executor.configure_job(5, FaasConfig(memory_mb=256, timeout_secs=1))
    started = time.monotonic()

    with pytest.raises(FaasTimeout) as caught:
        executor.invoke(5, b"x")

    assert isinstance(caught.value.__cause__, httpx.ReadTimeout)
    assert time.monotonic() - started < 3


def test_a_job_that_was_never_deployed_is_not_deployed(executor: HttpFaasExecutor) -> None:
    with pytest.raises(NotDeployed):
        executor.invoke(6, b"x")
    with pytest.raises(NotDeployed):
        executor.get_deployment(6)
    assert executor.health_check(6) is False


def test_a_server_with_an_api_key_refuses_calls_without_the_header(
    start_server: StartServer, package_for: Callable[[str], bytes]
) -> None:
    secured = start_server(api_key=API_KEY)
    anonymous = HttpFaasExecutor(secured)
    authorised = HttpFaasExecutor(secured).with_auth_header("Authorization", f"Bearer {API_KEY}")

    with pytest.raises(AuthError) as caught:
        anonymous.deploy_job(7, package_for("double"), SMALL)
    authorised.deploy_job(7, package_for("double"), SMALL)

    assert authorised.invoke(7, b"\x03") == b"\x06"
    with pytest.raises(AuthError):
        anonymous.invoke(7, b"\x03")
    assert caught.value.status == 401
    assert API_KEY not in repr(authorised)


def test_a_wrong_key_is_refused_and_never_shown(
    start_server: StartServer, package_for: Callable[[str], bytes]
) -> None:
    secured = start_server(api_key=API_KEY)
    wrong = HttpFaasExecutor(secured).with_auth_header("Authorization", "Bearer wrong-key-123")

    with pytest.raises(AuthError) as caught:
        wrong.health_check(7)

    assert "wrong-key-123" not in caught.value.message


def test_an_invoke_after_warm_is_not_a_cold_start(
    executor: HttpFaasExecutor, package_for: Callable[[str], bytes]
) -> None:
    executor.deploy_job(8, package_for("double"), SMALL)

    warmed = executor.warm(8, 2)
    metrics = executor.invoke_with_metrics(8, b"\x01").metrics

    assert warmed >= 1
    assert metrics.cold_start is False


def test_health_and_deployment_describe_a_deployed_function(
    executor: HttpFaasExecutor, package_for: Callable[[str], bytes]
) -> None:
    package = package_for("double")
    before = datetime.now(UTC) - timedelta(seconds=5)
    deployed = executor.deploy_job(9, package, FaasConfig(memory_mb=320, timeout_secs=15))

    described = executor.get_deployment(9)

    assert executor.health_check(9) is True
    assert described.function_id == deployed.function_id == "blueprint-job-9"
    assert described.endpoint is not None and described.endpoint.endswith(
        "/api/functions/blueprint-job-9/invoke"
    )
    assert (described.memory_mb, described.timeout_secs) == (320, 15)
    assert described.deployed_at is not None and described.deployed_at >= before
    assert described.package_size_bytes is not None and described.package_size_bytes > 0


def test_undeploy_removes_the_function_and_is_idempotent(
    executor: HttpFaasExecutor, package_for: Callable[[str], bytes]
) -> None:
    executor.deploy_job(10, package_for("double"), SMALL)

    executor.undeploy_job(10)
    executor.undeploy_job(10)

    assert executor.health_check(10) is False
    with pytest.raises(NotDeployed):
        executor.invoke(10, b"x")


def test_a_redeploy_replaces_the_function(
    executor: HttpFaasExecutor, package_for: Callable[[str], bytes]
) -> None:
    executor.deploy_job(11, package_for("double"), SMALL)
    assert executor.invoke(11, b"\x01\x02") == b"\x02\x04"

    executor.deploy_job(11, package_for("reverse"), SMALL)

    assert executor.invoke(11, b"\x01\x02") == b"\x02\x01"


def test_a_config_the_platform_refuses_is_invalid_config(
    executor: HttpFaasExecutor, package_for: Callable[[str], bytes]
) -> None:
    # Within our limits (which would refuse memory_mb=100 before sending): the platform
    # itself refuses a NUL in an environment value.
    with pytest.raises(InvalidConfig):
        executor.deploy_job(12, package_for("double"), FaasConfig(env_vars={"A": "x\0y"}))


def test_a_shell_bootstrap_answering_a_string_result_is_decoded(
    executor: HttpFaasExecutor,
) -> None:
    package = build_shell_package('cat > /dev/null\necho \'{"result": "ok", "success": true}\'')
    executor.deploy_job(13, package, SMALL)

    assert executor.invoke(13, b"ignored") == b"ok"


def test_one_executor_serves_concurrent_threads(
    executor: HttpFaasExecutor, package_for: Callable[[str], bytes]
) -> None:
    executor.deploy_job(14, package_for("reverse"), FaasConfig(memory_mb=256, max_concurrency=8))
    results: dict[int, bytes] = {}

    def call(index: int) -> None:
        results[index] = executor.invoke(14, bytes([index, 0]))

    threads = [threading.Thread(target=call, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert results == {index: bytes([0, index]) for index in range(8)}


# -- mTLS against a local TLS server that requires a client certificate -------------------


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=30)


def _issue(directory: Path, name: str, *, ca: str, san: str | None = None) -> None:
    """Issue ``name.pem``/``name.key`` (EC P-256, one day) signed by the ``ca`` pair."""
    key, csr, cert = (directory / f"{name}{suffix}" for suffix in (".key", ".csr", ".pem"))
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key)
    _openssl("req", "-new", "-key", key, "-out", csr, "-subj", f"/CN={name}")
    extra: list[str | Path] = []
    if san is not None:
        extensions = directory / f"{name}.ext"
        extensions.write_text(f"subjectAltName={san}\n")
        extra = ["-extfile", extensions]
    _openssl(
        "x509", "-req", "-in", csr, "-CA", directory / f"{ca}.pem", "-CAkey",
        directory / f"{ca}.key", "-CAcreateserial", "-days", "1", "-out", cert, *extra,
    )  # fmt: skip


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("pki")
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", directory / "ca.key")
    _openssl(
        "req", "-x509", "-new", "-key", directory / "ca.key", "-out", directory / "ca.pem",
        "-days", "1", "-subj", "/CN=test-ca",
    )  # fmt: skip
    _issue(directory, "server", ca="ca", san="IP:127.0.0.1")
    _issue(directory, "client", ca="ca")
    return directory


class _InvokeEcho(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        body = json.dumps({"job_id": request["job_id"], "result": request["args"], "success": True})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, format: str, *args: object) -> None:
        return None


@pytest.fixture(scope="module")
def mtls_url(pki: Path) -> Iterator[str]:
    """An HTTPS server on a free port that refuses clients without a cert from the test CA."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki / "server.pem", pki / "server.key")
    context.load_verify_locations(pki / "ca.pem")
    context.verify_mode = ssl.CERT_REQUIRED
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _InvokeEcho)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=_STOP_DEADLINE_S)


def test_a_client_certificate_opens_an_mtls_platform(mtls_url: str, pki: Path) -> None:
    executor = HttpFaasExecutor(mtls_url, verify=pki / "ca.pem").with_client_cert(
        pki / "client.pem", pki / "client.key"
    )

    assert executor.invoke(1, b"mtls") == b"mtls"


def test_an_mtls_platform_refuses_a_client_without_a_certificate(mtls_url: str, pki: Path) -> None:
    executor = HttpFaasExecutor(mtls_url, verify=pki / "ca.pem")

    with pytest.raises(InvocationFailed):
        executor.invoke(1, b"x")


def test_a_platform_certificate_from_an_unknown_ca_is_refused(mtls_url: str, pki: Path) -> None:
    executor = HttpFaasExecutor(mtls_url, cert_path=pki / "client.pem", key_path=pki / "client.key")

    with pytest.raises(InvocationFailed) as caught:
        executor.invoke(1, b"x")

    assert isinstance(caught.value.__cause__, httpx.ConnectError)
