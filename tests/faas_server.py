"""The reference FaaS server as a real process, for every test that forwards jobs to one.

One way to start it (own process group, a free port, ready when it answers HTTP) and one
package of the demo's squaring function, instead of a copy in each test module. The
reference server's own tests use their richer harness in
``tests/providers/reference_server/_support.py`` (restarts, logs, limits).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx

from providers.packaging import build_custom_package
from tests.processes import free_port, stop_process

ROOT = Path(__file__).resolve().parents[1]
_READY_DEADLINE_S = 30.0
_STOP_DEADLINE_S = 15.0


@contextlib.contextmanager
def reference_server(data_dir: Path, *, env: Mapping[str, str] | None = None) -> Iterator[str]:
    """Run ``python -m providers.reference_server`` on ``data_dir``; yield its base URL.

    Returns once the server answers HTTP (any status: a 404, or a 401 with an API key, proves
    it serves); fails if it exits first. On exit its whole process group is stopped, so
    bootstrap processes it started go too.
    """
    port = free_port()
    command = [sys.executable, "-m", "providers.reference_server", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--data-dir", str(data_dir)]
    process = subprocess.Popen(
        command, cwd=ROOT, env=dict(os.environ if env is None else env), start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_serving(process, url)
        yield url
    finally:
        stop_process(process)


def squaring_package() -> bytes:
    """The demo's squaring job packaged for the Custom FaaS contract (handler ``square``)."""
    return build_custom_package(
        "_squaring:square", sources=[ROOT / "dispatcher" / "_squaring.py"], python=sys.executable
    )


def _wait_until_serving(process: subprocess.Popen[bytes], url: str) -> None:
    deadline = time.monotonic() + _READY_DEADLINE_S
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the reference server exited with status {process.returncode}")
        try:
            httpx.get(f"{url}/api/functions/readiness-probe/health", timeout=1.0)
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"the reference server did not answer within {_READY_DEADLINE_S} s"
                ) from None
            time.sleep(0.05)
