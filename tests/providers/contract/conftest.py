"""The contract suite's executor kinds; each test runs once per kind.

Adding a provider is one fixture function here, decorated with :func:`executor_kind`, that
yields a :class:`~tests.providers.contract._driver.ContractDriver` for it (see README.md)::

    @executor_kind
    def gcp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ContractDriver]:
        with _gcp.local_platform() as platform:
            yield _gcp.GcpDriver(platform)
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest

from tests.providers._azure_fake import FakeAzure
from tests.providers._digitalocean_fake import FakeDigitalOcean
from tests.providers._gcp_platform import GcpPlatform
from tests.providers._lambda_platform import local_lambda
from tests.providers.contract._aws import AwsDriver
from tests.providers.contract._azure import AzureDriver
from tests.providers.contract._custom import ContractFront, CustomDriver
from tests.providers.contract._digitalocean import DigitalOceanDriver
from tests.providers.contract._driver import EXECUTOR_KINDS, ContractDriver, executor_kind
from tests.providers.contract._gcp import GcpDriver
from tests.providers.reference_server._support import ServerProcess

_SERVER_API_KEY_ENV = "BLUEPRINT_FAAS_SERVER_API_KEY"


@executor_kind
def custom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ContractDriver]:
    """The reference server with an API key, refusing at once what it cannot run."""
    api_key = f"contract-key-{secrets.token_hex(8)}"
    work_dir = tmp_path_factory.mktemp("contract-custom")
    server = ServerProcess(
        data_dir=work_dir / "data",
        extra_args=["--max-queued-per-function", "0"],
        env={**os.environ, _SERVER_API_KEY_ENV: api_key},
        api_key=api_key,
    )
    server.start()
    try:
        with ContractFront(server.base_url) as front:
            driver = CustomDriver(
                front, work_dir, api_key=api_key, env_secret=f"env-{secrets.token_hex(8)}"
            )
            yield driver
            driver.executor.close()
    finally:
        server.stop()


@executor_kind
def aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ContractDriver]:
    """moto's server with a front that runs each package as Lambda's Python runtime would."""
    work_dir = tmp_path_factory.mktemp("contract-aws")
    with local_lambda(work_dir / "platform") as front:
        driver = AwsDriver(
            front,
            work_dir,
            secret_key=f"contract-secret-{secrets.token_hex(8)}",
            env_secret=f"env-{secrets.token_hex(8)}",
        )
        yield driver
        driver.executor.close()


@executor_kind
def azure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ContractDriver]:
    """A local fake of ARM and Kudu; each app served by a real host process."""
    work_dir = tmp_path_factory.mktemp("contract-azure")
    with FakeAzure(work_dir / "platform") as platform:
        driver = AzureDriver(platform, work_dir, env_secret=f"env-{secrets.token_hex(8)}")
        yield driver
        driver.executor.close()


@executor_kind
def digitalocean(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ContractDriver]:
    """The local fake of DigitalOcean's namespaces API and OpenWhisk API, running the actions."""
    work_dir = tmp_path_factory.mktemp("contract-digitalocean")
    with FakeDigitalOcean(f"dop_v1_{secrets.token_hex(16)}", work_dir) as fake:
        driver = DigitalOceanDriver(fake, work_dir, env_secret=f"env-{secrets.token_hex(8)}")
        yield driver
        driver.executor.close()


@executor_kind
def gcp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ContractDriver]:
    """The local Cloud Functions platform, serving each deploy with functions-framework."""
    work_dir = tmp_path_factory.mktemp("contract-gcp")
    with GcpPlatform(work_dir) as platform:
        driver = GcpDriver(platform, work_dir, env_secret=f"env-{secrets.token_hex(8)}")
        yield driver
        driver.executor.close()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "driver" in metafunc.fixturenames:
        metafunc.parametrize("driver", EXECUTOR_KINDS, indirect=True)


@pytest.fixture
def driver(request: pytest.FixtureRequest) -> ContractDriver:
    """The driver of the executor kind this test runs for."""
    kind: ContractDriver = request.getfixturevalue(request.param)
    return kind
