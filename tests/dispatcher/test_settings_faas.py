"""An app declared by its settings file: local jobs' module, FaaS jobs, and every way to get
one wrong (each a ConfigError naming the key, never quoting a secret)."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from textwrap import dedent

import pytest

from dispatcher import Blueprint, ConfigError, Router, Settings, load_app
from dispatcher.settings import CONFIG_ENV_VAR
from providers.base import FaasConfig
from providers.custom import HttpFaasExecutor
from providers.registry import provider_names

SECRET = "Bearer s3cret-value"
LOCAL_MODULE = "blueprint_settings_local_jobs"

EXAMPLE = """
retry_max = 2

[local]
module = "blueprint_settings_local_jobs"

[faas.options.custom]
base_url = "http://127.0.0.1:8080"
auth_header = { name = "Authorization", value = "env:TEST_FAAS_KEY" }

[faas.jobs.1]
provider = "custom"
memory_mb = 256
timeout_secs = 60
keep_warm = true

[faas.jobs.2]
provider = "custom"

[faas.jobs.3]
provider = "custom"
options = { function_prefix = "acme" }
"""

#: What an unknown provider's error lists as known: every installed provider.
KNOWN = ", ".join(provider_names())


@pytest.fixture(autouse=True)
def local_jobs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A local jobs module on the path (job 0 echoes), and the secret in the environment."""
    (tmp_path / f"{LOCAL_MODULE}.py").write_text(
        dedent(
            """
            from dispatcher import Router

            router = Router()
            other = Router()
            not_a_router = 3


            @router.job(0)
            def echo(args: bytes) -> bytes:
                return args


            @other.job(1)
            def clash(args: bytes) -> bytes:
                return args
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("TEST_FAAS_KEY", SECRET)
    monkeypatch.delenv(CONFIG_ENV_VAR, raising=False)
    yield
    sys.modules.pop(LOCAL_MODULE, None)


def write(tmp_path: Path, text: str, name: str = "app.toml") -> Path:
    path = tmp_path / name
    path.write_text(dedent(text))
    return path


def problem_of(tmp_path: Path, text: str) -> str:
    """The message of the ConfigError the file's app raises, without its path prefix."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_app(str(path))
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert "s3cret" not in message
    return message.removeprefix(f"{path}: ")


def test_a_settings_file_defines_knobs_local_jobs_and_faas_jobs(tmp_path: Path) -> None:
    blueprint = load_app(str(write(tmp_path, EXAMPLE)))

    assert blueprint.settings.retry_max == 2
    assert blueprint.router.job_ids() == [0]
    assert blueprint.registry.job_ids() == [1, 2, 3]
    first, second, third = (blueprint.registry.get(job_id) for job_id in (1, 2, 3))
    assert isinstance(first, HttpFaasExecutor)
    assert isinstance(third, HttpFaasExecutor)
    # Equal options, one executor; other options, another.
    assert first is second
    assert third is not first
    assert third.function_id(3) == "acme-3"
    assert first.job_config(1) == FaasConfig(memory_mb=256, timeout_secs=60, keep_warm=True)
    assert first.job_config(2) == FaasConfig()
    assert repr(first) == (
        "HttpFaasExecutor(base_url='http://127.0.0.1:8080', function_prefix='blueprint-job', "
        "header_names=['Authorization'], client_cert=None)"
    )
    assert "s3cret" not in repr(blueprint)


def test_the_same_app_reads_from_json(tmp_path: Path) -> None:
    document = {
        "local": {"module": LOCAL_MODULE},
        "faas": {"jobs": {"5": {"provider": "custom", "options": {"base_url": "http://h:1"}}}},
    }
    path = write(tmp_path, json.dumps(document), name="app.json")
    blueprint = load_app(str(path))
    assert (blueprint.router.job_ids(), blueprint.registry.job_ids()) == ([0], [5])


def test_a_python_app_may_keep_its_handlers_and_read_faas_jobs_from_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(
        tmp_path,
        """
        [faas.jobs.1]
        provider = "custom"
        options = { base_url = "http://h:1" }
        """,
    )
    monkeypatch.setenv(CONFIG_ENV_VAR, str(path))
    router = Router()
    router.add(0, lambda args: args)

    blueprint = Blueprint.from_config(router=router)

    assert blueprint.router is router
    assert blueprint.registry.job_ids() == [1]
    assert Settings.from_env() == blueprint.settings


def test_the_app_tables_are_not_knobs_but_other_keys_still_are(tmp_path: Path) -> None:
    path = write(tmp_path, "no_such_knob = 1\n" + EXAMPLE)
    with pytest.raises(ConfigError, match="unknown setting"):
        Settings.from_env({CONFIG_ENV_VAR: str(path)})
    assert Settings.from_env({CONFIG_ENV_VAR: str(write(tmp_path, EXAMPLE))}).retry_max == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '[faas.jobs.1]\nprovider = "nimbus"\n',
            f"faas.jobs.1.provider: unknown provider 'nimbus' (known: {KNOWN})",
        ),
        (
            '[faas.options.nimbus]\nproject = "p"\n',
            f"faas.options.nimbus: unknown provider 'nimbus' (known: {KNOWN})",
        ),
        ("[faas.jobs.1]\nmemory_mb = 256\n", "faas.jobs.1.provider: expected a provider name"),
        ("[faas.options]\ncustom = 3\n", "faas.options.custom: expected a table"),
        (
            '[faas.jobs.x]\nprovider = "custom"\n',
            "faas.jobs.x: not a job id (an integer in [0, 4294967295])",
        ),
        (
            '[faas.jobs.4294967296]\nprovider = "custom"\n',
            "faas.jobs.4294967296: not a job id (an integer in [0, 4294967295])",
        ),
        ('[faas.job.1]\nprovider = "custom"\n', "faas.job: unknown key (known: jobs, options)"),
        (
            '[faas.jobs.1]\nprovider = "custom"\nmemory = 256\n'
            'options = { base_url = "http://h:1" }\n',
            "faas.jobs.1.memory: unknown key",
        ),
        (
            '[faas.jobs.1]\nprovider = "custom"\n'
            'options = { base_url = "http://h:1", region = "x" }\n',
            "faas.jobs.1.options.region: unknown key",
        ),
        (
            '[faas.jobs.1]\nprovider = "custom"\n',
            "faas.jobs.1.options.base_url: Field required",
        ),
        (
            '[faas.jobs.1]\nprovider = "custom"\noptions = { base_url = "ftp://h" }\n',
            "faas.jobs.1.options.base_url: the URL must be absolute, with an http or https scheme",
        ),
        (
            '[faas.jobs.1]\nprovider = "custom"\ntimeout_secs = "soon"\n'
            'options = { base_url = "http://h:1" }\n',
            "faas.jobs.1.timeout_secs: Input should be a valid integer, unable to parse string "
            "as an integer",
        ),
        (
            '[faas.jobs.1]\nprovider = "custom"\nmemory_mb = 100\n'
            'options = { base_url = "http://h:1" }\n',
            "faas.jobs.1.memory_mb: memory_mb=100 is below the minimum of 128 MB (custom limits)",
        ),
        (
            '[faas.jobs.1]\nprovider = "custom"\ntimeout_secs = 120\n'
            'options = { base_url = "http://h:1", limits = { max_timeout_secs = 60 } }\n',
            "faas.jobs.1.timeout_secs: timeout_secs=120 is above the maximum of 60 s "
            "(custom limits)",
        ),
        (
            '[faas.jobs.1]\nprovider = "custom"\n'
            'options = { base_url = "http://h:1", headers = { X-Key = "env:TEST_UNSET_KEY" } }\n',
            "faas.jobs.1.options.headers.X-Key: environment variable TEST_UNSET_KEY is not set",
        ),
        ('[local]\nmodule = "no_such_module_here"\n', "local.module: cannot import"),
        (
            f'[local]\nmodule = "{LOCAL_MODULE}:not_a_router"\n',
            f"local.module: {LOCAL_MODULE}:not_a_router is int, not a Router",
        ),
        (f'[local]\nmodule = "{LOCAL_MODULE}"\npath = "."\n', "local.path: unknown key"),
        (
            f'[local]\nmodule = "{LOCAL_MODULE}:other"\n[faas.jobs.1]\nprovider = "custom"\n'
            'options = { base_url = "http://h:1" }\n',
            "job(s) [1] are both local and FaaS jobs",
        ),
    ],
)
def test_every_mistake_is_a_config_error_naming_its_key(
    tmp_path: Path, text: str, expected: str
) -> None:
    assert problem_of(tmp_path, text).startswith(expected)


def test_every_problem_of_a_file_is_reported_at_once(tmp_path: Path) -> None:
    message = problem_of(
        tmp_path,
        """
        [faas.jobs.1]
        provider = "nimbus"
        [faas.jobs.2]
        provider = "custom"
        bogus = true
        options = { base_url = "http://h:1" }
        """,
    )
    assert message.split("; ") == [
        f"faas.jobs.1.provider: unknown provider 'nimbus' (known: {KNOWN})",
        "faas.jobs.2.bogus: unknown key",
    ]


def test_a_secret_given_inline_never_shows_in_an_error(tmp_path: Path) -> None:
    message = problem_of(
        tmp_path,
        """
        [faas.jobs.1]
        provider = "custom"
        options = { base_url = "s3cret://x", auth_header = { name = "", value = "s3cret" } }
        """,
    )
    assert "faas.jobs.1.options.auth_header.name" in message


def test_local_jobs_given_in_code_and_in_the_file_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, f'[local]\nmodule = "{LOCAL_MODULE}"\n')
    with pytest.raises(ConfigError, match=r"local jobs are given twice"):
        Blueprint.from_config(path, router=Router())


def test_without_a_file_there_is_no_configured_app() -> None:
    with pytest.raises(ConfigError, match="no settings file: give its path or set"):
        Blueprint.from_config()
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_app("no-such-app.toml")


def test_the_readme_example_is_an_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    (example,) = re.findall(r"```toml\n(# blueprint\.toml\n.*?)```", readme, re.DOTALL)
    monkeypatch.setenv("MY_FAAS_KEY", SECRET)
    path = write(tmp_path, example.replace('"mymod"', f'"{LOCAL_MODULE}"'))

    blueprint = load_app(str(path))

    assert blueprint.settings.broker_url == "redis://127.0.0.1:6379/0"
    assert (blueprint.router.job_ids(), blueprint.registry.job_ids()) == ([0], [1, 3])
    first, third = blueprint.registry.get(1), blueprint.registry.get(3)
    assert first.job_config(1) == FaasConfig(memory_mb=256, timeout_secs=60, keep_warm=True)
    assert third.limits.max_request_bytes == 1_048_576
    assert third.limits.max_timeout_secs == first.limits.max_timeout_secs == 900
