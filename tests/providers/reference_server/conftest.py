"""Fixtures: reference servers as real processes, unique function ids, output folders."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ._support import PROBE_BOOTSTRAP, FileGate, ServerProcess, make_zip


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server with default limits, shared by a test module (ids are unique per test)."""
    running = ServerProcess(tmp_path_factory.mktemp("server") / "data").start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Factory for a server with its own flags, env and data dir, stopped after the test."""
    started: list[ServerProcess] = []

    def start(
        *extra_args: str,
        env: dict[str, str] | None = None,
        api_key: str | None = None,
        data_dir: Path | None = None,
    ) -> ServerProcess:
        folder = data_dir or tmp_path / f"data-{len(started)}"
        running = ServerProcess(folder, list(extra_args), env or {}, api_key).start()
        started.append(running)
        return running

    try:
        yield start
    finally:
        for running in started:
            running.stop()


@pytest.fixture
def function_id() -> str:
    """A fresh function id, so tests sharing a server never collide."""
    return f"fn-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    """A folder bootstraps write into (passed to them as OUT_DIR)."""
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


@pytest.fixture
def probe_zip() -> bytes:
    """The probe bootstrap, packaged."""
    return make_zip({"bootstrap": PROBE_BOOTSTRAP})


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[FileGate]:
    """A closed gate bootstraps can wait on; opened at the latest when the test ends."""
    held = FileGate(tmp_path / "gate")
    try:
        yield held
    finally:
        held.open()
