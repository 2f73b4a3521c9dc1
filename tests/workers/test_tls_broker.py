"""A ``rediss://`` broker: calls still go through the atomic-pop transport, over real TLS."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from dispatcher import Blueprint, JobCall, Settings
from dispatcher.keys import CONSUMERS_KEY
from tests.processes import stop_process
from tests.workers.conftest import FAST_KNOBS, Run, StartWorker, free_port, wait_until

pytestmark = pytest.mark.integration


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A redis-server speaking only TLS, with a certificate of our own CA for 127.0.0.1."""
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        cwd=tmp_path,
    )
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        cwd=tmp_path,
    )
    (tmp_path / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "san.ext",
        "-out",
        "server.pem",
        cwd=tmp_path,
    )
    port = free_port()
    process = subprocess.Popen(
        [
            "redis-server",
            "--port",
            "0",
            "--tls-port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--tls-cert-file",
            "server.pem",
            "--tls-key-file",
            "server.key",
            "--tls-ca-cert-file",
            "ca.pem",
            "--tls-auth-clients",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    ca = tmp_path / "ca.pem"
    client = redis.Redis(
        host="127.0.0.1", port=port, ssl=True, ssl_ca_certs=str(ca), socket_timeout=1
    )

    def pings() -> bool:
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False

    wait_until(pings, what="the TLS redis-server")
    yield port, ca
    stop_process(process)


def test_a_tls_broker_carries_calls_through_the_atomic_pop_transport(
    tls_redis: tuple[int, Path], blueprint: Blueprint, start_worker: StartWorker
) -> None:
    port, ca = tls_redis
    url = f"rediss://127.0.0.1:{port}/0?ssl_cert_reqs=required&ssl_ca_certs={ca}"
    settings = Settings.from_redis_url(url, **FAST_KNOBS)
    blueprint.with_settings(settings)
    start_worker(jobs="0", worker_settings=settings)

    run = Run(blueprint, [JobCall(0, (7).to_bytes(8, "big"))])
    run.finish(timeout_s=30)
    run.assert_each_answered_once_and_ok()
    assert int.from_bytes(run.results[0].body, "big") == 49

    broker = redis.Redis(host="127.0.0.1", port=port, ssl=True, ssl_ca_certs=str(ca))
    assert broker.scard(CONSUMERS_KEY) == 1, "the worker consumes through dispatcher._broker"
    with pytest.raises(redis.ConnectionError):
        redis.Redis(
            host="127.0.0.1", port=port, socket_timeout=1
        ).ping()  # the port speaks TLS only
