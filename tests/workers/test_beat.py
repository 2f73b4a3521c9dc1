"""Beat for real: it warms and checks FaaS jobs on the reference server, and only one schedules.

Real processes throughout: the reference server, ``blueprint-faas worker`` and
``blueprint-faas beat`` on this test's Redis db, with one-second periods.
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery

from dispatcher import JobCall, Settings
from dispatcher.keys import BEAT_LOCK_KEY, HEALTH_TASK, WARM_QUEUE, WARM_TASK, health_key
from dispatcher.records import HealthStatus, read_health
from dispatcher.runner import submit
from providers.custom import HttpFaasExecutor
from tests import faas_server
from tests.workers import warm_app
from tests.workers.conftest import (
    FAST_KNOBS,
    ROOT,
    WORKER_READY,
    WorkerProcess,
    free_port,
    spawn_cli,
    stop_process,
    wait_until,
)
from workers.scheduler import SingleBeatScheduler

pytestmark = pytest.mark.integration

PERIOD_S = 1.0
LOCK_TTL_S = 2.0
_SENDING = re.compile(r"Sending due task (\S+) \((\S+)\)")


@pytest.fixture(scope="module")
def warm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A reference server of this module's own: job 11 deployed and never invoked yet."""
    with faas_server.reference_server(tmp_path_factory.mktemp("warm-faas")) as url:
        with HttpFaasExecutor(url) as executor:
            executor.deploy_job(
                warm_app.WARM_JOB, faas_server.squaring_package(), warm_app.WARM_CONFIG
            )
        yield url


@pytest.fixture
def beat_settings(redis_url: str) -> Settings:
    return Settings.from_redis_url(
        redis_url,
        **FAST_KNOBS,
        warm_interval_s=PERIOD_S,
        health_interval_s=PERIOD_S,
        beat_lock_ttl_s=LOCK_TTL_S,
    )


class Spawner:
    """Starts ``blueprint-faas`` processes for the warm app; stops them at teardown."""

    def __init__(self, settings: Settings, faas_url: str, tmp_path: Path) -> None:
        self.settings = settings
        self.faas_url = faas_url
        self.tmp_path = tmp_path
        self.started: list[WorkerProcess] = []
        self._counter = itertools.count()

    def start(self, *args: str, ready: str) -> WorkerProcess:
        log = self.tmp_path / f"{args[0]}-{next(self._counter)}.log"
        env = {
            **os.environ,
            **self.settings.to_env(),
            "PYTHONPATH": str(ROOT),
            warm_app.FAAS_URL_ENV: self.faas_url,
        }
        command = [*args, "--app", "tests.workers.warm_app", "--loglevel", "INFO"]
        started = spawn_cli(command, env, log, ready=ready)
        self.started.append(started)
        return started

    def worker(self) -> WorkerProcess:
        return self.start("worker", "--pool", "threads", "--concurrency", "2", ready=WORKER_READY)

    def beat(self) -> WorkerProcess:
        return self.start("beat", ready="beat: Starting...")

    def stop_all(self) -> None:
        for process in self.started:
            if process.process.poll() is None:
                process.stop()


@pytest.fixture
def spawn(beat_settings: Settings, warm_server: str, tmp_path: Path) -> Iterator[Spawner]:
    spawner = Spawner(beat_settings, warm_server, tmp_path)
    yield spawner
    spawner.stop_all()


def sent_by(process: WorkerProcess) -> list[str]:
    """The schedule entries a beat process logged as sent, in order."""
    return [match[0] for match in _SENDING.findall(process.output())]


def queued_control_tasks(client: redis.Redis) -> list[tuple[str, Any]]:
    """(task name, args) of every message waiting in the control queue."""
    found = []
    for raw in client.lrange(WARM_QUEUE, 0, -1):
        message = json.loads(raw)
        body = json.loads(base64.b64decode(message["body"]))
        found.append((message["headers"]["task"], body[0]))
    return found


def test_beat_warms_a_keep_warm_job_so_its_next_call_starts_warm_and_records_health(
    spawn: Spawner, beat_settings: Settings, redis_url: str
) -> None:
    client = redis.Redis.from_url(redis_url)
    blueprint = warm_app.build_app().with_settings(beat_settings)
    spawn.worker()
    cold = submit(blueprint, JobCall(warm_app.WARM_JOB, (3).to_bytes(8, "big")), wait=True)
    assert cold is not None and cold.ok and cold.metrics is not None
    assert cold.metrics.cold_start is True  # nothing warmed the function yet

    beat = spawn.beat()
    wait_until(
        lambda: (
            read_health(client, warm_app.WARM_JOB) is not None
            and read_health(client, warm_app.MISSING_JOB) is not None
        ),
        20,
        "health records of both jobs",
    )
    wait_until(
        lambda: "warmed job 11: 1 of 1 instances" in spawn.started[0].output(),
        20,
        "a warm task run by the worker",
    )
    warm = submit(blueprint, JobCall(warm_app.WARM_JOB, (4).to_bytes(8, "big")), wait=True)

    assert warm is not None and warm.ok and int.from_bytes(warm.body, "big") == 16
    assert warm.metrics is not None and warm.metrics.cold_start is False
    healthy = read_health(client, warm_app.WARM_JOB)
    missing = read_health(client, warm_app.MISSING_JOB)
    assert healthy is not None and healthy.status is HealthStatus.HEALTHY and healthy.error == ""
    assert missing is not None and missing.status is HealthStatus.UNHEALTHY
    assert client.exists(health_key(warm_app.WARM_JOB), health_key(warm_app.MISSING_JOB)) == 2
    assert {"warm-job-11", "health-job-11", "health-job-12"} <= set(sent_by(beat))


def test_two_beats_schedule_once_and_the_standby_takes_over_when_the_holder_dies(
    spawn: Spawner, redis_url: str
) -> None:
    client = redis.Redis.from_url(redis_url)
    first, second = spawn.beat(), spawn.beat()
    holder_token = wait_until(lambda: client.get(BEAT_LOCK_KEY), 10, "a beat lock holder")
    pids = {first.process.pid: first, second.process.pid: second}
    holder = pids[int(holder_token.decode().split(":")[1])]
    standby = second if holder is first else first
    wait_until(lambda: len(sent_by(holder)) >= 9, 15, "three periods of sending")

    # One schedule: the standby sent nothing, and the queue holds one warm per period.
    assert sent_by(standby) == []
    queued = queued_control_tasks(client)
    warms = [args for name, args in queued if name == WARM_TASK]
    healths = [args for name, args in queued if name == HEALTH_TASK]
    assert warms == [[warm_app.WARM_JOB, 1]] * len(warms)
    assert len(warms) == sent_by(holder).count("warm-job-11")
    assert sorted(job for (job,) in healths) == sorted(
        int(entry.rsplit("-", 1)[1]) for entry in sent_by(holder) if entry.startswith("health")
    )

    holder.kill()  # SIGKILL: no release, the lock has to expire
    wait_until(lambda: sent_by(standby), LOCK_TTL_S + 10, "the standby to take over")
    new_token = client.get(BEAT_LOCK_KEY)
    assert isinstance(new_token, bytes)
    assert int(new_token.split(b":")[1]) == standby.process.pid
    assert "acquired" in standby.output()


def test_a_stopped_beat_releases_its_lock(spawn: Spawner, redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    beat = spawn.beat()
    wait_until(lambda: client.get(BEAT_LOCK_KEY), 10, "the beat lock")

    stop_process(beat.process, signal.SIGTERM)

    assert client.get(BEAT_LOCK_KEY) is None


def test_the_lock_renews_and_releases_only_for_its_holder(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    mine, theirs = (_scheduler(redis_url, ttl_s=5) for _ in range(2))

    assert mine._renew_or_take() and not theirs._renew_or_take()
    assert client.get(BEAT_LOCK_KEY) == mine.token.encode()
    client.pexpire(BEAT_LOCK_KEY, 1000)
    assert mine._renew_or_take()  # renewed: the full TTL again
    assert 4000 < client.pttl(BEAT_LOCK_KEY) <= 5000
    theirs.close()  # not the holder: its release leaves the lock alone
    assert client.get(BEAT_LOCK_KEY) == mine.token.encode()
    mine.close()
    assert client.get(BEAT_LOCK_KEY) is None
    late = _scheduler(redis_url, ttl_s=5)
    assert late._renew_or_take() and client.get(BEAT_LOCK_KEY) == late.token.encode()


def test_a_holder_whose_lock_was_taken_over_cannot_renew_it(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    stalled, standby = (_scheduler(redis_url, ttl_s=5) for _ in range(2))
    assert stalled._renew_or_take()

    client.delete(BEAT_LOCK_KEY)  # the stalled holder's lock expired
    assert standby._renew_or_take()

    assert not stalled._renew_or_take()
    assert client.get(BEAT_LOCK_KEY) == standby.token.encode()


def test_a_beat_keeps_ticking_while_redis_is_unreachable(caplog: pytest.LogCaptureFixture) -> None:
    # Celery's beat loop does not catch what tick raises: an error there stops the beat.
    app = Celery("beat-without-redis", set_as_current=False)
    app.conf.update(
        blueprint_beat_lock_url=f"redis://127.0.0.1:{free_port()}/0",  # nothing listens
        blueprint_beat_lock_ttl_s=LOCK_TTL_S,
    )
    scheduler = SingleBeatScheduler(app)

    with caplog.at_level(logging.DEBUG, logger="blueprint_faas.workers.scheduler"):
        assert scheduler.tick() == scheduler.heartbeat_s

    assert "beat lock unreachable, not sending" in caplog.text


def _scheduler(redis_url: str, ttl_s: float) -> SingleBeatScheduler:
    app = Celery("beat-lock", set_as_current=False)
    app.conf.update(blueprint_beat_lock_url=redis_url, blueprint_beat_lock_ttl_s=ttl_s)
    return SingleBeatScheduler(app)
