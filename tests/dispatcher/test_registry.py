"""FaasRegistry: a lookup from job id to executor."""

from __future__ import annotations

import pytest

from dispatcher.errors import InvalidJobCall, UnknownJob
from dispatcher.registry import FaasRegistry
from tests.memory_executor import MemoryExecutor


def test_a_registered_job_is_a_faas_job_and_others_are_not() -> None:
    registry = FaasRegistry()
    executor = MemoryExecutor()
    registry.register(3, executor)
    assert 3 in registry
    assert 4 not in registry
    assert registry.get(3) is executor
    assert registry.job_ids() == [3]


def test_registering_a_job_again_replaces_its_executor_visibly() -> None:
    registry = FaasRegistry()
    first, second = MemoryExecutor(), MemoryExecutor()
    registry.register(1, first)
    registry.register(1, second)
    assert registry.get(1) is second
    assert len(registry) == 1


def test_an_unknown_job_raises_a_typed_error_naming_it() -> None:
    with pytest.raises(UnknownJob) as caught:
        FaasRegistry().get(9)
    assert caught.value.job_id == 9


@pytest.mark.parametrize("job_id", [-1, 2**32, "0"])
def test_an_invalid_job_id_cannot_be_registered(job_id: object) -> None:
    with pytest.raises(InvalidJobCall):
        FaasRegistry().register(job_id, MemoryExecutor())  # type: ignore[arg-type]


def test_job_zero_can_be_registered() -> None:
    registry = FaasRegistry()
    executor = MemoryExecutor()
    registry.register(0, executor)
    assert registry.get(0) is executor
