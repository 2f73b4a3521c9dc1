"""Our Redis broker transport against a real Redis: kombu's behaviour, cheaper per call."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from kombu import Connection, Exchange, Queue

from dispatcher import Settings
from dispatcher._broker import Transport
from tests.workers.conftest import wait_until

pytestmark = pytest.mark.integration

_QUEUE = Queue("broker-test", Exchange("broker-test", type="direct"), routing_key="broker-test")


@pytest.fixture
def connection(redis_url: str) -> Iterator[Connection]:
    # The settings' restore profile: a short visibility timeout, a scan on every look.
    options = {
        "visibility_timeout": 1,
        "unacked_restore_interval": 1,
        "unacked_restore_throttle": 1,
    }
    with Connection(redis_url, transport=Transport, transport_options=options) as conn:
        yield conn


@pytest.fixture
def server(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


def _publish(connection: Connection, body: str) -> None:
    producer = connection.Producer()
    producer.publish(body, exchange=_QUEUE.exchange, routing_key="broker-test", declare=[_QUEUE])


def _receive_one(connection: Connection, received: list[Any]) -> Any:
    count = len(received)

    def arrived() -> bool:
        with contextlib.suppress(TimeoutError):
            connection.drain_events(timeout=0.2)
        return len(received) > count

    wait_until(arrived, 10, "a delivery")
    return received[-1]


def _scans(server: redis.Redis) -> int:
    """How many unacked-index scans the Redis server has run (all dbs)."""
    return int(server.info("commandstats").get("cmdstat_zrange", {}).get("calls", 0))


def test_settings_select_this_transport_for_a_redis_broker(redis_url: str) -> None:
    config = Settings.from_redis_url(redis_url).celery_connection_config()
    with Connection(config["broker_url"], transport=config["broker_transport"]) as connection:
        assert isinstance(connection.transport, Transport)
        assert connection.default_channel.client.ping()


def test_a_tls_broker_gets_this_transport_with_verified_tls_by_default() -> None:
    config = Settings(broker_url="rediss://cache.example:6380/0").celery_connection_config()
    assert config["broker_transport"] == "dispatcher._broker:Transport"
    connection = Connection(
        config["broker_url"], transport=config["broker_transport"], ssl=config["broker_use_ssl"]
    )
    assert connection.ssl == {"ssl_cert_reqs": "required"}


def test_a_tls_result_backend_verifies_the_server_by_default() -> None:
    from celery import Celery

    app = Celery("tls-check", set_as_current=False)
    app.conf.update(Settings(broker_url="rediss://cache.example:6380/0").celery_connection_config())
    assert app.backend.connparams["ssl_cert_reqs"] == ssl.CERT_REQUIRED


def test_a_tls_brokers_own_url_parameters_replace_the_default_tls_options() -> None:
    url = "rediss://cache.example:6380/0?ssl_cert_reqs=required&ssl_ca_certs=/etc/ca.pem"
    config = Settings(broker_url=url).celery_connection_config()
    connection = Connection(
        config["broker_url"], transport=config["broker_transport"], ssl=config["broker_use_ssl"]
    )
    assert isinstance(connection.ssl, dict)
    assert connection.ssl["ssl_ca_certs"] == "/etc/ca.pem"


def test_a_channel_keeps_one_client_until_its_pool_is_replaced(connection: Connection) -> None:
    channel: Any = connection.default_channel  # kombu's Redis channel, untyped internals
    client = channel._create_client()
    assert channel._create_client() is client
    channel._pool = None  # what kombu does on a reconnect
    replacement = channel._create_client()
    assert replacement is not client
    assert replacement.connection_pool is channel.pool
    assert replacement.ping()


def test_a_call_is_recorded_as_unacked_until_acknowledged(
    connection: Connection, server: redis.Redis
) -> None:
    received: list[Any] = []
    with connection.Consumer([_QUEUE], callbacks=[lambda _body, m: received.append(m)]):
        _publish(connection, "one")
        message = _receive_one(connection, received)
        assert server.hlen("unacked") == 1
        message.ack()
    assert server.hlen("unacked") == 0 and server.zcard("unacked_index") == 0


def test_an_unacknowledged_call_comes_back_after_its_visibility_timeout(
    connection: Connection, server: redis.Redis
) -> None:
    received: list[Any] = []
    with connection.Consumer([_QUEUE], callbacks=[lambda _body, m: received.append(m)]):
        _publish(connection, "lost")
        _receive_one(connection, received)  # read, never acknowledged: a lost worker's call
        cycle = connection.transport.cycle
        wait_until(
            lambda: cycle.maybe_restore_messages() or server.llen("broker-test") == 1,
            10,
            "the call restored to its queue",
        )


def test_restores_scan_on_a_clock_not_on_every_empty_poll(
    connection: Connection, server: redis.Redis
) -> None:
    with connection.Consumer([_QUEUE], callbacks=[]):
        cycle = connection.transport.cycle
        before = _scans(server)
        for _ in range(50):  # what 50 wakes of a busy green worker's loop used to cost
            cycle.maybe_restore_messages()
        assert _scans(server) - before == 1
        wait_until(
            lambda: cycle.maybe_restore_messages() or _scans(server) - before == 2,
            5,
            "the next scan, half an interval later",
        )
