"""The README is the front door: its app example runs and its commands exist.

The app module and the builder snippet are taken from the README itself, so the page cannot
drift from the code. They run on the embedded transport (no broker configured), with a real
worker process, as a newcomer following the page would.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dispatcher import load_app

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
_PYTHON_BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)
_CODE = re.compile(r"```[a-z]*\n(.*?)```|`([^`\n]+)`", re.DOTALL)
_CONTINUATION = re.compile(r"\\\n\s*")
_START_TIMEOUT_S = 60.0


def _python_blocks() -> list[str]:
    return _PYTHON_BLOCK.findall(README)


def _app_module_source() -> str:
    (source,) = [block for block in _python_blocks() if block.startswith("# myapp.py")]
    return source


def _runner_snippet() -> str:
    (snippet,) = [block for block in _python_blocks() if "BlueprintRunner.builder" in block]
    return snippet


@pytest.fixture
def readme_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The README's ``myapp.py`` in a folder on sys.path, embedded settings in the env."""
    (tmp_path / "myapp.py").write_text(_app_module_source())
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("MY_FAAS_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("MY_FAAS_KEY", "readme-key")
    monkeypatch.setenv("BLUEPRINT_FAAS_DATA_DIR", str(tmp_path / "broker"))
    for name in ("BLUEPRINT_FAAS_BROKER_URL", "BLUEPRINT_FAAS_RESULT_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    yield tmp_path
    sys.modules.pop("myapp", None)


def test_the_readme_app_module_defines_its_local_and_faas_jobs(readme_app: Path) -> None:
    blueprint = load_app("myapp")
    assert blueprint.router.job_ids() == [0, 2]
    assert blueprint.registry.job_ids() == [1]
    config = blueprint.registry.get(1).job_config(1)
    assert (config.memory_mb, config.timeout_secs, config.keep_warm) == (256, 60, True)
    assert "readme-key" not in repr(blueprint.registry.get(1))


@pytest.mark.integration
def test_the_readme_runner_snippet_runs_against_a_real_worker(readme_app: Path) -> None:
    log = readme_app / "worker.log"
    command = [sys.executable, "-m", "dispatcher", "worker", "--app", "myapp", "--jobs", "0,2"]
    command += ["--pool", "threads", "--concurrency", "4"]
    with log.open("wb") as sink:
        worker = subprocess.Popen(
            command, cwd=readme_app, env=dict(os.environ), stdout=sink, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + _START_TIMEOUT_S
        while " ready." not in log.read_text(errors="replace"):
            assert worker.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, "the worker did not start"
            time.sleep(0.05)
        namespace: dict[str, object] = {}
        exec(_app_module_source() + _runner_snippet().replace("print(", "_ = ("), namespace)
        summary = namespace["summary"]
        assert (summary.succeeded, summary.failed) == (100, 0)  # type: ignore[attr-defined]
    finally:
        worker.terminate()
        worker.wait(timeout=30)


def _readme_commands() -> list[list[str]]:
    """Every ``blueprint-faas`` command in the README's code, continuation lines joined."""
    commands = []
    for block, inline in _CODE.findall(README):
        code = _CONTINUATION.sub(" ", block or inline)
        for line in code.splitlines():
            _, found, rest = line.partition("blueprint-faas ")
            if found:
                commands.append(shlex.split(f"blueprint-faas {rest}".split("#")[0]))
    return commands


def test_every_command_the_readme_shows_exists_with_the_options_it_uses() -> None:
    from typer.testing import CliRunner

    from dispatcher.cli import cli

    commands = _readme_commands()
    assert len(commands) >= 10
    runner = CliRunner()
    for words in commands:
        name = words[1]
        result = runner.invoke(cli, [name, "--help"])
        assert result.exit_code == 0, f"{name}: {result.output}"
        for option in (word.split("=")[0] for word in words if word.startswith("--")):
            assert option in result.output, f"{name} has no {option}"
