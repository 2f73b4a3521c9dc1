"""Which queues a worker serves, by the placement of its jobs and the lanes it is given."""

from __future__ import annotations

import pytest

from dispatcher import Blueprint, ConfigError, Placement, Router
from dispatcher.placement import Lane
from providers.custom import HttpFaasExecutor
from workers.app import served_queues


def _app() -> Blueprint:
    router = Router()
    for job_id in (0, 1, 2):
        router.add(job_id, lambda args: args)
    app = Blueprint(
        router=router,
        placements={1: Placement.LOCAL_WITH_FAAS_OVERFLOW, 2: Placement.FAAS_WITH_LOCAL_FALLBACK},
    )
    for job_id in (1, 2, 3):
        app.with_faas_executor(job_id, HttpFaasExecutor("http://faas.test"))
    return app


@pytest.mark.parametrize(
    ("lanes", "queues"),
    [
        (
            None,
            [
                "blueprint.jobs.0",
                "blueprint.jobs.1",
                "blueprint.jobs.1.faas",
                "blueprint.jobs.2",
                "blueprint.jobs.2.local",
                "blueprint.jobs.3",
            ],
        ),
        ([Lane.LOCAL], ["blueprint.jobs.0", "blueprint.jobs.1", "blueprint.jobs.2.local"]),
        ([Lane.FAAS], ["blueprint.jobs.1.faas", "blueprint.jobs.2", "blueprint.jobs.3"]),
    ],
)
def test_a_worker_serves_the_queues_of_its_lanes(
    lanes: list[Lane] | None, queues: list[str]
) -> None:
    assert served_queues(_app(), [0, 1, 2, 3], lanes) == queues


def test_a_worker_with_no_queue_on_its_lane_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"jobs \[0\] have no queue on the faas side"):
        served_queues(_app(), [0], [Lane.FAAS])
