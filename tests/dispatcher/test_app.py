"""The app definition and how ``--app`` finds it."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator

import pytest

from dispatcher import Blueprint, ConfigError, Router, Settings, load_app
from providers.custom import HttpFaasExecutor


@pytest.fixture
def module() -> Iterator[types.ModuleType]:
    module = types.ModuleType("blueprint_test_app")
    sys.modules[module.__name__] = module
    yield module
    del sys.modules[module.__name__]


def test_load_app_finds_app_then_blueprint_then_a_named_attribute(
    module: types.ModuleType,
) -> None:
    first, second = Blueprint(), Blueprint()
    module.blueprint = second  # type: ignore[attr-defined]
    assert load_app("blueprint_test_app") is second
    module.app = first  # type: ignore[attr-defined]
    assert load_app("blueprint_test_app") is first
    assert load_app("blueprint_test_app:blueprint") is second


def test_a_factory_is_called(module: types.ModuleType) -> None:
    built = Blueprint()
    module.make = lambda: built  # type: ignore[attr-defined]
    assert load_app("blueprint_test_app:make") is built


@pytest.mark.parametrize(
    "spec", ["no_such_module_here", "blueprint_test_app", "blueprint_test_app:value"]
)
def test_a_spec_that_names_no_blueprint_is_a_config_error(
    module: types.ModuleType, spec: str
) -> None:
    module.value = 3  # type: ignore[attr-defined]
    with pytest.raises(ConfigError):
        load_app(spec)


def test_a_blueprint_knows_its_local_and_faas_jobs() -> None:
    router = Router()
    router.add(0, lambda args: args)
    app = Blueprint(router=router, settings=Settings())
    app.with_faas_executor(5, HttpFaasExecutor("http://127.0.0.1:1"))
    assert app.job_ids() == [0, 5] and app.knows(5) and not app.knows(1)


def test_a_blueprint_accepts_its_jobs_or_any_job_when_it_defines_none() -> None:
    router = Router()
    router.add(0, lambda args: args)
    app = Blueprint(router=router, settings=Settings())
    assert app.accepts(0) and not app.accepts(1)
    assert Blueprint(settings=Settings()).accepts(1)


def test_settings_are_read_from_the_environment_on_first_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BLUEPRINT_FAAS_MAX_IN_FLIGHT", "9")
    assert Blueprint().settings.max_in_flight == 9
