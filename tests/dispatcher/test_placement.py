"""Placement policies: checked at load, and the publisher's decision against a real Redis."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from dispatcher import Blueprint, ConfigError, Router, Settings, load_app
from dispatcher.breaker import BreakerPolicy, CircuitBreaker
from dispatcher.keys import job_queue, lane_queue
from dispatcher.placement import Lane, Placement, PlacementReason, Placer, route_of_queue
from providers.custom import HttpFaasExecutor

KNOBS = {"overflow_backlog_high": 4, "overflow_backlog_low": 1, "overflow_sample_s": 0.05}


def _router(*job_ids: int) -> Router:
    router = Router()
    for job_id in job_ids:
        router.add(job_id, lambda args: args)
    return router


def _app(settings: Settings, placement: Placement) -> Blueprint:
    app = Blueprint(router=_router(0), settings=settings, placements={0: placement})
    return app.with_faas_executor(0, HttpFaasExecutor("http://faas.test"))


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("placement", "local", "faas", "missing"),
    [
        (Placement.LOCAL_WITH_FAAS_OVERFLOW, False, True, "a local handler"),
        (Placement.FAAS_WITH_LOCAL_FALLBACK, True, False, "a FaaS executor"),
        (Placement.FAAS, True, False, "a FaaS executor"),
        (Placement.LOCAL, False, True, "a local handler"),
    ],
)
def test_a_placement_without_what_it_runs_on_is_refused(
    placement: Placement, local: bool, faas: bool, missing: str
) -> None:
    app = Blueprint(router=_router(0) if local else Router(), placements={0: placement})
    if faas:
        app.with_faas_executor(0, HttpFaasExecutor("http://faas.test"))
    with pytest.raises(ConfigError, match=f"job 0: placement {placement} needs {missing}"):
        app.check_placements()


def test_an_unknown_placement_is_refused_by_name() -> None:
    with pytest.raises(ConfigError, match="unknown placement 'sometimes'"):
        Blueprint(placements={0: "sometimes"})


def test_a_job_without_a_placement_keeps_todays_rule() -> None:
    app = Blueprint(router=_router(0, 1)).with_faas_executor(1, HttpFaasExecutor("http://f.test"))
    assert (app.placement(0), app.placement(1)) == (Placement.LOCAL, Placement.FAAS)


def test_load_app_refuses_a_module_whose_placement_lacks_a_handler(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "half_placed.py").write_text(
        "from dispatcher import Blueprint\n"
        "app = Blueprint(placements={3: 'faas_with_local_fallback'})\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match="job 3: placement faas_with_local_fallback needs"):
        load_app("half_placed")


def test_a_settings_file_places_a_job_with_a_handler_and_an_executor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "placed_handlers.py").write_text(
        "from dispatcher import Router\nrouter = Router()\nrouter.add(1, lambda args: args)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    path = tmp_path / "app.toml"
    path.write_text(
        '[local]\nmodule = "placed_handlers"\n'
        '[faas.jobs.1]\nprovider = "custom"\nplacement = "faas_with_local_fallback"\n'
        '[faas.jobs.1.options]\nbase_url = "http://faas.test"\n'
    )
    app = Blueprint.from_config(path, environ={})
    assert app.placement(1) is Placement.FAAS_WITH_LOCAL_FALLBACK


def test_a_settings_file_placement_needs_both_sides(tmp_path: Path) -> None:
    path = tmp_path / "app.toml"
    path.write_text(
        '[faas.jobs.1]\nprovider = "custom"\nplacement = "local_with_faas_overflow"\n'
        '[faas.jobs.1.options]\nbase_url = "http://faas.test"\n'
    )
    with pytest.raises(ConfigError, match="job 1: placement local_with_faas_overflow needs a"):
        Blueprint.from_config(path, environ={})


def test_a_settings_file_names_a_bad_placement_by_its_key(tmp_path: Path) -> None:
    path = tmp_path / "app.toml"
    path.write_text(
        '[faas.jobs.1]\nprovider = "custom"\nplacement = "elsewhere"\n'
        '[faas.jobs.1.options]\nbase_url = "http://faas.test"\n'
    )
    with pytest.raises(ConfigError, match=r"faas\.jobs\.1\.placement: expected one of local"):
        Blueprint.from_config(path, environ={})


def test_overflow_switches_on_past_the_high_mark_and_back_at_the_low_one(redis_url: str) -> None:
    settings = Settings.from_redis_url(redis_url, **KNOBS)
    broker = redis.Redis.from_url(redis_url)
    clock = _Clock()
    placer = Placer(_app(settings, Placement.LOCAL_WITH_FAAS_OVERFLOW), broker, clock=clock)

    def route_with_backlog(waiting: int) -> PlacementReason:
        broker.delete(job_queue(0))
        if waiting:
            broker.lpush(job_queue(0), *(["call"] * waiting))
        clock.now += 1  # past the sample interval: the backlog is read again
        return placer.route(0).reason

    local, overflow = PlacementReason.POLICY, PlacementReason.OVERFLOW
    assert [route_with_backlog(n) for n in (0, 3, 4, 3, 2, 1, 2, 3, 4)] == [
        local,  # 0 waiting
        local,  # 3: below the high mark
        overflow,  # 4: at it
        overflow,  # 3 and 2: above the low mark, still overflowing (hysteresis)
        overflow,
        local,  # 1: back at the low mark
        local,  # 2 and 3: below the high mark again
        local,
        overflow,
    ]
    assert placer.route(0) == placer.route(0)
    assert placer.route(0).queue == lane_queue(0, Lane.FAAS)


def test_calls_published_within_one_sample_count_towards_the_backlog(redis_url: str) -> None:
    settings = Settings.from_redis_url(redis_url, **KNOBS)
    broker = redis.Redis.from_url(redis_url)
    placer = Placer(_app(settings, Placement.LOCAL_WITH_FAAS_OVERFLOW), broker, clock=_Clock())
    # The clock never moves: one LLEN (an empty queue), then the calls sent since count.
    reasons = [placer.route(0).reason for _ in range(6)]
    assert reasons == [PlacementReason.POLICY] * 4 + [PlacementReason.OVERFLOW] * 2


def test_a_fallback_job_is_published_to_its_local_lane_while_the_breaker_is_open(
    redis_url: str,
) -> None:
    settings = Settings.from_redis_url(redis_url, **KNOBS)
    broker = redis.Redis.from_url(redis_url)
    app = _app(settings, Placement.FAAS_WITH_LOCAL_FALLBACK)
    clock = _Clock()
    placer = Placer(app, broker, clock=clock)
    assert placer.route(0).queue == job_queue(0)
    breaker = CircuitBreaker(broker, app.registry.get(0).scope, BreakerPolicy(failures=1))
    breaker.record(breaker.admit(), failed=True)
    clock.now += 1
    route = placer.route(0)
    assert (route.queue, route.lane, route.reason) == (
        lane_queue(0, Lane.LOCAL),
        Lane.LOCAL,
        PlacementReason.FALLBACK,
    )


def test_without_a_broker_every_call_goes_home() -> None:
    placer = Placer(_app(Settings.embedded(), Placement.LOCAL_WITH_FAAS_OVERFLOW), None)
    assert placer.route(0).queue == job_queue(0)


@pytest.mark.parametrize(
    ("placement", "queue", "lane", "reason"),
    [
        (Placement.LOCAL_WITH_FAAS_OVERFLOW, "blueprint.jobs.0.faas", Lane.FAAS, "overflow"),
        (Placement.LOCAL_WITH_FAAS_OVERFLOW, "blueprint.jobs.0", Lane.LOCAL, "policy"),
        (Placement.FAAS_WITH_LOCAL_FALLBACK, "blueprint.jobs.0.local", Lane.LOCAL, "fallback"),
        (Placement.FAAS_WITH_LOCAL_FALLBACK, "blueprint.jobs.0", Lane.FAAS, "policy"),
        (Placement.FAAS, "blueprint.jobs.0.local", Lane.FAAS, "policy"),
        (Placement.LOCAL, None, Lane.LOCAL, "policy"),
    ],
)
def test_a_worker_knows_the_side_and_the_reason_from_the_queue(
    placement: Placement, queue: str | None, lane: Lane, reason: str
) -> None:
    route = route_of_queue(0, placement, queue)
    assert (route.lane, route.reason) == (lane, reason)


def test_status_shows_placements_lanes_breakers_and_budgets(redis_url: str) -> None:
    from dispatcher.budget import ConcurrencyBudget
    from dispatcher.status import app_status
    from providers.custom import LIMITS

    settings = Settings.from_redis_url(redis_url, **KNOBS)
    broker = redis.Redis.from_url(redis_url)
    budgeted = HttpFaasExecutor(
        "http://127.0.0.1:9/budgeted",
        limits=LIMITS.model_copy(update={"max_account_concurrency": 3}),
    )
    app = Blueprint(
        router=_router(0, 1, 2),
        settings=settings,
        placements={0: "local_with_faas_overflow", 1: "faas_with_local_fallback"},
    )
    app.with_faas_executor(0, HttpFaasExecutor("http://127.0.0.1:9"))
    app.with_faas_executor(1, budgeted)
    broker.lpush(lane_queue(0, Lane.FAAS), "call")  # any message: status only counts them
    breaker = CircuitBreaker(broker, budgeted.scope, BreakerPolicy(failures=1, cooldown_s=60))
    breaker.record(breaker.admit(), failed=True)
    ConcurrencyBudget(broker, budgeted.scope, 3, recover_s=60).acquire(0, 60)

    jobs = {job["job_id"]: job for job in app_status(app, inspect_timeout_s=0.2).to_dict()["jobs"]}

    assert (jobs[0]["placement"], jobs[0]["lane_queue"]) == (
        "local_with_faas_overflow",
        "blueprint.jobs.0.faas",
    )
    assert jobs[0]["lane_queue_length"] == 1
    assert jobs[0]["budget"] is None
    assert jobs[0]["breaker"]["state"] == "closed"
    assert (jobs[1]["placement"], jobs[1]["lane_queue"]) == (
        "faas_with_local_fallback",
        "blueprint.jobs.1.local",
    )
    assert jobs[1]["breaker"]["state"] == "open"
    assert 0 < jobs[1]["breaker"]["cooldown_left_s"] <= 60
    assert jobs[1]["budget"] == {"limit": 3, "declared": 3, "in_use": 1}
    assert (jobs[2]["placement"], jobs[2]["lane_queue"], jobs[2]["breaker"]) == (
        "local",
        None,
        None,
    )


def test_submit_publishes_where_the_placer_says(redis_url: str) -> None:
    from dispatcher import JobCall, submit

    settings = Settings.from_redis_url(redis_url, **KNOBS)
    broker = redis.Redis.from_url(redis_url)
    app = _app(settings, Placement.FAAS_WITH_LOCAL_FALLBACK)
    assert submit(app, JobCall(0)) is None
    breaker = CircuitBreaker(broker, app.registry.get(0).scope, BreakerPolicy(failures=1))
    breaker.record(breaker.admit(), failed=True)
    assert submit(app, JobCall(0)) is None
    assert (broker.llen(job_queue(0)), broker.llen(lane_queue(0, Lane.LOCAL))) == (1, 1)
