"""The workers' result backend: one atomic store that never replaces a stored success."""

from __future__ import annotations

import redis
from celery import Celery, states

from dispatcher.settings import Settings
from workers._results import ResultBackend
from workers.app import create_celery_app


def _backend(redis_url: str) -> ResultBackend:
    app = Celery("results-test", set_as_current=False)
    app.conf.update(result_backend=f"workers._results:ResultBackend+{redis_url}")
    backend = app.backend
    assert isinstance(backend, ResultBackend)
    return backend


def test_a_stored_result_is_published_to_subscribers(redis_url: str) -> None:
    backend = _backend(redis_url)
    key = backend.get_key_for_task("call-1")
    subscriber = redis.Redis.from_url(redis_url).pubsub()
    subscriber.subscribe(key)
    assert subscriber.get_message(timeout=1)["type"] == "subscribe"  # type: ignore[index]

    backend.store_result("call-1", {"ok": True}, states.SUCCESS)

    message = subscriber.get_message(timeout=2)
    assert message is not None and message["channel"] == key
    assert backend.get_task_meta("call-1", cache=False)["result"] == {"ok": True}
    subscriber.close()


def test_a_stored_success_is_never_replaced(redis_url: str) -> None:
    backend = _backend(redis_url)
    backend.store_result("call-2", {"first": True}, states.SUCCESS)

    backend.store_result("call-2", {"second": True}, states.SUCCESS)
    backend.store_result("call-2", None, states.RETRY)

    meta = backend.get_task_meta("call-2", cache=False)
    assert (meta["status"], meta["result"]) == (states.SUCCESS, {"first": True})


def test_a_retry_state_is_replaced_by_the_outcome(redis_url: str) -> None:
    backend = _backend(redis_url)
    backend.store_result("call-3", None, states.RETRY)

    backend.store_result("call-3", {"done": True}, states.SUCCESS)

    assert backend.get_task_meta("call-3", cache=False)["status"] == states.SUCCESS


def test_results_expire_as_configured(redis_url: str) -> None:
    backend = _backend(redis_url)
    backend.store_result("call-4", 1, states.SUCCESS)

    ttl_s = redis.Redis.from_url(redis_url).ttl(backend.get_key_for_task("call-4"))
    assert 0 < ttl_s <= backend.expires


def test_workers_on_redis_use_it_and_share_it_between_threads(settings: Settings) -> None:
    from dispatcher.app import Blueprint

    blueprint = Blueprint(settings=settings)
    blueprint.router.add(1, lambda args: args)
    app = create_celery_app(blueprint)

    assert isinstance(app.backend, ResultBackend)
    assert app.backend.thread_safe
