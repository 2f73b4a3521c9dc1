"""What the contract suite asks of an executor kind: the executor, and a driver of its function.

An *executor kind* is a fixture factory registered with :func:`executor_kind`: it yields a
:class:`ContractDriver` holding one executor of its provider, set up against a platform the
test controls (the reference server, moto, a local fake of the documented wire), and able to
make the job's function behave as each test needs. See ``README.md`` in this folder.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from enum import StrEnum
from textwrap import dedent
from typing import Any, TypeVar, cast

import pytest

from providers.base import FaasDeployment, FaasExecutor

__all__ = [
    "CONTRACT_HANDLERS",
    "EXECUTOR_KINDS",
    "HANDLER_OF",
    "Behaviour",
    "ContractDriver",
    "executor_kind",
]

#: The fixture names of the registered kinds, in registration order.
EXECUTOR_KINDS: list[str] = []

_Factory = TypeVar("_Factory", bound=Callable[..., Any])


class Behaviour(StrEnum):
    """How the job's function (or its platform) answers an invocation."""

    #: Returns its payload reversed, with the metrics the platform reports.
    SUCCEED = "succeed"
    #: The job itself fails (raises): a function error, never worth retrying.
    FAIL = "fail"
    #: The platform refuses the call as over capacity: 429 with ``Retry-After``.
    THROTTLE = "throttle"
    #: The platform fails on its side: a 5xx that is not the function's failure.
    SERVER_ERROR = "server_error"
    #: The function runs past its timeout and the platform stops it.
    TIME_OUT = "time_out"


#: The contract's job functions, for every Python-packaged kind.
CONTRACT_HANDLERS = dedent(
    """
    import fcntl
    import os
    import threading


    def reverse(payload):
        return payload[::-1]


    def fail(payload):
        raise RuntimeError("the contract function failed on purpose")


    def hold(payload):
        # Tell the driver this run holds the only slot or instance, then wait for its gate.
        open(os.path.join(os.environ["CONTRACT_DIR"], "held"), "w").close()
        with open(os.environ["CONTRACT_GATE"]) as gate:
            fcntl.flock(gate, fcntl.LOCK_SH)
        return payload[::-1]


    def overrun(payload):
        threading.Event().wait(120)
        return payload
    """
)
#: Which of them each behaviour deploys.
HANDLER_OF = {
    Behaviour.SUCCEED: "reverse",
    Behaviour.FAIL: "fail",
    Behaviour.THROTTLE: "hold",
    Behaviour.SERVER_ERROR: "reverse",
    Behaviour.TIME_OUT: "overrun",
}


class ContractDriver(ABC):
    """One executor kind, as the contract suite drives it.

    Attributes
    ----------
    executor:
        The executor under test, authenticated with a secret in ``secrets``.
    secrets:
        Values that must never appear in a repr, an error or a log line: at least the auth
        header's value and the value of an env var every deploy passes.
    reported_metrics:
        The :class:`~providers.base.FaasMetrics` fields the platform reports on success (the
        others may be None).
    throttle_retry_after_s:
        The ``Retry-After`` the platform sends with :attr:`Behaviour.THROTTLE`.
    """

    executor: FaasExecutor
    secrets: tuple[str, ...]
    reported_metrics: frozenset[str]
    throttle_retry_after_s: float

    @abstractmethod
    def function(
        self, job_id: int, behaviour: Behaviour
    ) -> contextlib.AbstractContextManager[FaasDeployment]:
        """Deploy ``job_id``'s function with the executor; inside the block it ``behaviour``s.

        Every deploy passes the secret env var. On exit whatever the behaviour held (a busy
        slot, a scripted answer) is released; the function stays deployed.
        """

    @abstractmethod
    def invocations_seen(self, job_id: int) -> int:
        """How many invoke requests for ``job_id`` reached the platform, counted on its side."""


def executor_kind(factory: _Factory) -> _Factory:
    """Register ``factory`` as an executor kind: a module-scoped fixture yielding a driver.

    The suite's ``driver`` fixture is parametrised over every registered kind, so a new
    provider joins the suite with one decorated fixture function in ``conftest.py``.
    """
    EXECUTOR_KINDS.append(factory.__name__)
    # pytest's fixture wrapper is not a public type; to the decorated module it is the factory.
    return cast(_Factory, pytest.fixture(scope="module")(factory))
