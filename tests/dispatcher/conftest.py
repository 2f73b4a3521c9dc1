"""The integration fixtures of ``tests/workers`` (own redis-server, workers), shared here."""

from tests.workers.conftest import (  # noqa: F401  (fixtures are found by name)
    blueprint,
    counters,
    flaky_function,
    redis_server,
    redis_url,
    reference_server,
    settings,
    start_worker,
)
