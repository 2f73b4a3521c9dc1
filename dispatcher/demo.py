"""The incredible-squaring demo: job 0 squares a u64 locally, job 1 on a FaaS platform.

This module is also the demo's app definition (``--app dispatcher.demo``): the worker the
demo starts imports it, like any worker would import a blueprint's app module. Job 1 runs on
the Custom FaaS reference server at ``$BLUEPRINT_DEMO_FAAS_URL``; :func:`run_demo` starts
that server, builds and deploys the function's package, starts one worker, runs the calls
and prints where each ran and how long it took.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from dispatcher import _squaring
from dispatcher.app import Blueprint
from dispatcher.jobs import JobCall, JobResult
from dispatcher.router import Router
from dispatcher.runner import BlueprintRunner, submit
from dispatcher.settings import Settings
from providers.base import FaasConfig

__all__ = ["DEMO_FAAS_URL_ENV", "FAAS_JOB", "LOCAL_JOB", "app", "build_app", "run_demo"]

#: Where the demo's worker finds the FaaS platform of job 1.
DEMO_FAAS_URL_ENV = "BLUEPRINT_DEMO_FAAS_URL"
LOCAL_JOB = 0
FAAS_JOB = 1
_FAAS_CONFIG = FaasConfig(memory_mb=128, timeout_secs=30)
_START_TIMEOUT_S = 30.0


def build_app() -> Blueprint:
    """The demo blueprint: job 0 local, job 1 on the platform at ``$BLUEPRINT_DEMO_FAAS_URL``."""
    from providers.custom import HttpFaasExecutor

    router = Router()
    router.add(LOCAL_JOB, _squaring.square)
    executor = HttpFaasExecutor(os.environ.get(DEMO_FAAS_URL_ENV, "http://127.0.0.1:8080"))
    executor.configure_job(FAAS_JOB, _FAAS_CONFIG)
    return Blueprint(router=router).with_faas_executor(FAAS_JOB, executor)


#: The demo's app definition, built on import by ``load_app("dispatcher.demo")``.
app = build_app


def run_demo(
    numbers: tuple[int, ...] = (2, 3, 4, 5, 6, 7),
    *,
    settings: Settings | None = None,
    pool: str = "threads",
    out: Callable[[str], None] = print,
) -> list[JobResult]:
    """Run the demo end to end and return its results (job 0 and job 1 for each number).

    With no broker configured it runs on the embedded filesystem transport in a temporary
    folder; with ``BLUEPRINT_FAAS_BROKER_URL`` set, on that broker.

    Raises
    ------
    TimeoutError
        The reference server or the worker did not start in time.
    """
    settings = settings or Settings.from_env()
    with tempfile.TemporaryDirectory(prefix="blueprint-faas-demo-") as tmp:
        if settings.is_embedded:
            settings = settings.model_copy(update={"data_dir": Path(tmp) / "broker"})
        out(f"broker: {'embedded filesystem transport' if settings.is_embedded else settings}")
        with _reference_server(Path(tmp) / "faas") as faas_url:
            _deploy_square(faas_url)
            out(f"reference FaaS server at {faas_url}; job {FAAS_JOB} deployed")
            env = {**os.environ, **settings.to_env(), DEMO_FAAS_URL_ENV: faas_url}
            with _worker(env, pool, Path(tmp) / "worker.log"):
                demo_app = build_app().with_settings(settings)
                warm_up = JobCall(LOCAL_JOB, (1).to_bytes(8, "big"))
                submit(demo_app, warm_up, wait=True, timeout_s=_START_TIMEOUT_S)
                return _run_calls(demo_app, numbers, out)


def _run_calls(
    demo_app: Blueprint, numbers: tuple[int, ...], out: Callable[[str], None]
) -> list[JobResult]:
    sent_at: dict[str, float] = {}
    results: list[JobResult] = []

    def calls() -> Iterator[JobCall]:
        for n in numbers:
            for job_id in (LOCAL_JOB, FAAS_JOB):
                call = JobCall(job_id, n.to_bytes(8, "big"), metadata={"x": n})
                sent_at[call.call_id] = time.perf_counter()
                yield call

    def show(result: JobResult) -> None:
        elapsed_ms = (time.perf_counter() - sent_at[result.call_id]) * 1000
        results.append(result)
        x = result.metadata.get("x")
        if not result.ok:
            out(f"job {result.job_id} x={x}: FAILED on {result.ran_on}: {result.error}")
            return
        line = (
            f"job {result.job_id}  {x!s:>4}² = {int.from_bytes(result.body, 'big')!s:<8}"
            f"  ran on {result.ran_on:<6}  round trip {elapsed_ms:7.1f} ms"
        )
        if result.metrics is not None:
            line += f"  (invoke {result.metrics.total_ms:.1f} ms)"
        out(line)

    builder = BlueprintRunner.builder(demo_app.settings).app(demo_app).producer(calls)
    summary = builder.consumer(show).run()
    out(f"{summary.succeeded} succeeded, {summary.failed} failed in {summary.elapsed_s:.2f} s")
    return results


def _deploy_square(faas_url: str) -> None:
    from providers.custom import HttpFaasExecutor
    from providers.packaging import build_custom_package

    package = build_custom_package(
        f"{_squaring.__name__.rpartition('.')[2]}:square",
        sources=[Path(_squaring.__file__)],
        python=sys.executable,
    )
    with HttpFaasExecutor(faas_url) as executor:
        executor.deploy_job(FAAS_JOB, package, _FAAS_CONFIG)


@contextlib.contextmanager
def _reference_server(data_dir: Path) -> Iterator[str]:
    port = _free_port()
    command = [sys.executable, "-m", "providers.reference_server", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--data-dir", str(data_dir)]
    with _process(command, dict(os.environ), data_dir.parent / "reference-server.log"):
        url = f"http://127.0.0.1:{port}"
        _wait_for_port(port)
        yield url


@contextlib.contextmanager
def _worker(env: dict[str, str], pool: str, log_path: Path) -> Iterator[None]:
    command = [sys.executable, "-m", "dispatcher", "worker"]
    command += ["--app", "dispatcher.demo", "--pool", pool, "--concurrency", "4"]
    command += ["--loglevel", "WARNING"]
    with _process(command, env, log_path):
        yield


@contextlib.contextmanager
def _process(
    command: list[str], env: dict[str, str], log_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``command`` with its output in ``log_path``; the log is shown if the demo fails.

    The demo's own lines are the product here; a worker's banner would bury them.
    """
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield process
    except BaseException:
        sys.stderr.write(f"--- {log_path.name} ---\n{log_path.read_text(errors='replace')}")
        raise
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_for_port(port: int) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port} after {_START_TIMEOUT_S} s")
