"""What does CloudFunctionExecutor.invoke cost on top of a bare HTTP POST to the function?

    .venv/bin/python bench/gcp_invoke.py [--calls 1000] [--warmup 100]

The demo's squaring job is packaged with ``build_gcp_package`` and served by a real
functions-framework process, as the python3xx runtime serves it. Two clients call it in
turns, one call each per round, so load on the shared box falls on both alike:

- ``executor``: ``CloudFunctionExecutor.invoke`` (request size check, JSON encoding, the ID
  token flow with its cache, the pooled client, status and reply checks, metrics);
- ``bare``: an ``httpx.Client`` POST of the same JSON with a token fetched beforehand, and
  the reply's ``result`` decoded to bytes (the least a caller must do).

The executor learns the function's URI from a stub of the v2 API (one GET, before timing) and
gets a static token; the function does not check it. Printed: p50 and p99 of each side, the
difference, and CPU time per call in this process (the server's CPU is not counted).
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import io
import json
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
from _support import REPO_ROOT, free_port, percentile_ms, stop_process, wait_until
from pydantic_core import to_json

from providers._auth import Credential
from providers.gcp import CloudFunctionExecutor
from providers.packaging import ENTRY_POINT, build_gcp_package

PROJECT = "bench-project"
REGION = "europe-west1"
TOKEN = "bench-id-token"


class StaticTokens:
    """One token for everything: the function under test checks none."""

    def access_token(self) -> Credential:
        return TOKEN, None

    def id_token(self, audience: str) -> Credential:
        return TOKEN, None


@contextlib.contextmanager
def function_server(directory: Path) -> Iterator[str]:
    """The squaring package served by functions-framework; yields its URL."""
    package = build_gcp_package(
        "_squaring:square", sources=[REPO_ROOT / "dispatcher" / "_squaring.py"]
    )
    with zipfile.ZipFile(io.BytesIO(package)) as archive:
        archive.extractall(directory)
    port = free_port()
    command = [sys.executable, "-m", "functions_framework", "--target", ENTRY_POINT]
    command += ["--source", str(directory / "main.py"), "--host", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen(
        command, cwd=directory, start_new_session=True, stdout=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_until(lambda: _answers(url), "functions-framework to serve")
        yield url
    finally:
        stop_process(process)


def _answers(url: str) -> bool:
    try:
        httpx.post(url, json={"warmup": True}, timeout=1.0)
    except httpx.TransportError:
        return False
    return True


@contextlib.contextmanager
def api_stub(uri: str) -> Iterator[str]:
    """Answers the v2 API's GET of job 1's function with ``uri``; yields its base URL."""
    name = f"projects/{PROJECT}/locations/{REGION}/functions/blueprint-job-1"
    body = json.dumps({"name": name, "state": "ACTIVE", "serviceConfig": {"uri": uri}}).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == f"/v2/{name}" else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return None

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=100)
    options = parser.parse_args()
    payload = (12345).to_bytes(8, "big")

    with (
        tempfile.TemporaryDirectory() as directory,
        function_server(Path(directory)) as url,
        api_stub(url) as api,
        CloudFunctionExecutor(
            PROJECT, REGION, credentials=StaticTokens(), api_base_url=api
        ) as executor,
        httpx.Client(timeout=30.0) as bare,
    ):
        content = to_json({"job_id": 1, "args": list(payload)})
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}

        def call_bare() -> bytes:
            return bytes(bare.post(url, content=content, headers=headers).json()["result"])

        def call_executor() -> bytes:
            return executor.invoke(1, payload)

        assert call_bare() == call_executor(), "both sides must get the same answer"
        for _ in range(options.warmup):
            call_bare()
            call_executor()

        sides = {"executor": call_executor, "bare": call_bare}
        latencies_s: dict[str, list[float]] = {name: [] for name in sides}
        cpu_s = dict.fromkeys(sides, 0.0)
        for _ in range(options.calls):
            for name, call in sides.items():
                cpu_started, started = time.process_time(), time.perf_counter()
                call()
                latencies_s[name].append(time.perf_counter() - started)
                cpu_s[name] += time.process_time() - cpu_started

    print(f"{options.calls} calls per side, interleaved, payload {len(payload)} bytes")
    print(f"{'side':<10} {'p50 ms':>8} {'p99 ms':>8} {'CPU ms/call':>12}")
    for name, samples in latencies_s.items():
        p50, p99 = percentile_ms(samples, 50), percentile_ms(samples, 99)
        cpu_ms = cpu_s[name] / options.calls * 1000
        print(f"{name:<10} {p50:>8.3f} {p99:>8.3f} {cpu_ms:>12.3f}")
    executor_s, bare_s = latencies_s["executor"], latencies_s["bare"]
    print(
        "executor - bare: "
        f"p50 {percentile_ms(executor_s, 50) - percentile_ms(bare_s, 50):+.3f} ms, "
        f"p99 {percentile_ms(executor_s, 99) - percentile_ms(bare_s, 99):+.3f} ms, "
        f"CPU {(cpu_s['executor'] - cpu_s['bare']) / options.calls * 1000:+.3f} ms/call"
    )


if __name__ == "__main__":
    main()
