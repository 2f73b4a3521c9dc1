"""The batching rule: which ready calls share a message."""

from __future__ import annotations

import pytest

from dispatcher import JobCall
from dispatcher._batching import batches, wire_size


def ids(groups: list[list[JobCall]]) -> list[list[str]]:
    return [[call.call_id for call in group] for group in groups]


def test_a_lone_call_is_a_group_of_its_own() -> None:
    call = JobCall(1, b"x")
    assert ids(batches([call], max_calls=16, max_bytes=1 << 20)) == [[call.call_id]]


def test_calls_of_one_job_share_groups_of_at_most_max_calls_in_order() -> None:
    calls = [JobCall(1, b"x") for _ in range(7)]
    groups = batches(calls, max_calls=3, max_bytes=1 << 20)
    assert [len(group) for group in groups] == [3, 3, 1]
    assert [call for group in groups for call in group] == calls


def test_calls_of_different_jobs_never_share_a_group() -> None:
    calls = [JobCall(job_id, b"x") for job_id in (1, 2, 1, 3, 2)]
    groups = batches(calls, max_calls=16, max_bytes=1 << 20)
    assert sorted({call.job_id for call in group}.pop() for group in groups) == [1, 2, 3]
    assert all(len({call.job_id for call in group}) == 1 for group in groups)
    assert sorted(len(group) for group in groups) == [1, 2, 2]


def test_a_group_stays_within_the_byte_budget_and_a_bigger_call_goes_alone() -> None:
    small = [JobCall(1, bytes(300)) for _ in range(4)]
    big = JobCall(1, bytes(3000))
    budget = 2 * wire_size(small[0]) + 1
    groups = batches([*small[:2], big, *small[2:]], max_calls=16, max_bytes=budget)
    assert ids(groups) == [
        [small[0].call_id, small[1].call_id],
        [big.call_id],
        [small[2].call_id, small[3].call_id],
    ]


@pytest.mark.parametrize("count", [1, 5])
def test_with_max_calls_1_every_call_is_alone(count: int) -> None:
    calls = [JobCall(1, b"x") for _ in range(count)]
    assert ids(batches(calls, max_calls=1, max_bytes=1 << 20)) == [[c.call_id] for c in calls]


def test_the_wire_size_counts_base64_args_and_metadata() -> None:
    bare = JobCall(1, b"", call_id="c")
    assert wire_size(JobCall(1, bytes(300), call_id="c")) - wire_size(bare) == 400
    assert wire_size(JobCall(1, b"", metadata={"block": 12345}, call_id="c")) > wire_size(bare)
