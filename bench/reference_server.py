"""Benchmark the reference server against running the same bootstrap directly.

Question: what does the HTTP platform cost on top of a bare process start, cold and warm,
and how many invocations per second does it sustain?

For a shell and a Python bootstrap it prints cold and warm invoke p50/p99 and sustained
invocations/s at several concurrencies through the HTTP API (httpx, asyncio), next to the
same work done directly with `subprocess` in this process (the baseline), with ratios.

    .venv/bin/python bench/reference_server.py [--cold 60] [--warm 200] [--calls 1500]
        [--concurrency 1,4,16,64] [--warm-instances 4] [--warm-gap-ms 40]

The shell bootstrap is `build_shell_package`'s; the Python one is `build_custom_package`'s (the
handler core and adapter users deploy), whose stdout ends right after the reply. The direct
baseline runs the same extracted bootstrap and waits for its exit, as `subprocess` does.

"Warm" means served by a pre-started instance whose start-up has finished: instances are
one-shot, so each latency sample (cold and warm alike, HTTP and direct alike) is paced by
`--warm-gap-ms` to let the pool's background refill complete; the direct warm baseline
pre-spawns its process and waits the same gap.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from _support import free_port, percentile_ms, start_process, stop_process

from providers.packaging import BOOTSTRAP_NAME, build_custom_package, build_shell_package

_REQUEST = {"job_id": 1, "args": [1, 2, 3, 4]}
_REQUEST_BYTES = json.dumps(_REQUEST).encode()

_SHELL_SCRIPT = 'cat > /dev/null\necho \'{"result": [4, 3, 2, 1], "success": true}\'\n'
_HANDLER_MODULE = "bench_handler"
_HANDLER_SOURCE = "def reverse(payload):\n    return payload[::-1]\n"


def _shell_package(_scratch: Path) -> bytes:
    return build_shell_package(_SHELL_SCRIPT)


def _python_package(scratch: Path) -> bytes:
    source = scratch / f"{_HANDLER_MODULE}.py"
    source.write_text(_HANDLER_SOURCE)
    return build_custom_package(
        f"{_HANDLER_MODULE}:reverse", sources=[source], python=sys.executable
    )


_PACKAGES: dict[str, Callable[[Path], bytes]] = {"shell": _shell_package, "python": _python_package}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold", type=int, default=60, help="sequential cold invocations")
    parser.add_argument("--warm", type=int, default=200, help="sequential warm invocations")
    parser.add_argument("--calls", type=int, default=1500, help="invocations per throughput run")
    parser.add_argument("--concurrency", default="1,4,16,64")
    parser.add_argument("--warm-instances", type=int, default=4)
    parser.add_argument(
        "--warm-gap-ms", type=float, default=40.0, help="pause before each latency sample"
    )
    parser.add_argument("--only", choices=sorted(_PACKAGES), default=None)
    args = parser.parse_args()
    levels = [int(level) for level in args.concurrency.split(",")]

    with tempfile.TemporaryDirectory(prefix="bench-reference-server-") as scratch:
        root = Path(scratch)
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        server = _start_server(root / "data", port, root / "server.log")
        try:
            for name, build in _PACKAGES.items():
                if args.only and name != args.only:
                    continue
                package = build(root)
                bootstrap = _extract(package, root / f"{name}-code") / BOOTSTRAP_NAME
                _deploy(base_url, name, package, max_concurrency=max(levels))
                _bench_one(base_url, name, bootstrap, args, levels)
        except BaseException:
            print(f"server log tail:\n{(root / 'server.log').read_text()[-3000:]}", file=sys.stderr)
            raise
        finally:
            stop_process(server)


def _bench_one(
    base_url: str, name: str, bootstrap: Path, args: argparse.Namespace, levels: list[int]
) -> None:
    print(f"\n== {name} bootstrap ==")
    print(f"{'measure':<28}{'HTTP API':>14}{'direct':>14}{'ratio':>9}")
    gap_s = args.warm_gap_ms / 1000
    with httpx.Client(base_url=base_url, timeout=120) as client:
        url = f"/api/functions/{name}/invoke"

        def http_call() -> None:
            response = client.post(url, json=_REQUEST)
            if response.status_code != 200:
                raise RuntimeError(f"invoke failed: {response.status_code} {response.text}")

        cold_http = _latencies(http_call, args.cold, gap_s=gap_s)
        cold_direct = _latencies(lambda: _direct_call(bootstrap), args.cold, gap_s=gap_s)
        _row("cold p50 (ms)", percentile_ms(cold_http, 50), percentile_ms(cold_direct, 50))
        _row("cold p99 (ms)", percentile_ms(cold_http, 99), percentile_ms(cold_direct, 99))

        warmed = client.post(
            f"/api/functions/{name}/warm", params={"instances": args.warm_instances}
        )
        warmed.raise_for_status()
        time.sleep(0.5)  # Let the freshly started pool finish its own start-up once.
        warm_http = _latencies(http_call, args.warm, gap_s=gap_s, check_warm=(client, url))
        warm_direct = _warm_direct_latencies(bootstrap, args.warm, gap_s)
        client.post(f"/api/functions/{name}/warm", params={"instances": 0}).raise_for_status()
        _row("warm p50 (ms)", percentile_ms(warm_http, 50), percentile_ms(warm_direct, 50))
        _row("warm p99 (ms)", percentile_ms(warm_http, 99), percentile_ms(warm_direct, 99))
        ratio = percentile_ms(warm_http, 50) / percentile_ms(cold_http, 50)
        print(f"{'warm/cold p50 (HTTP)':<28}{ratio:>14.2f}")

    for level in levels:
        http_rate = asyncio.run(_http_throughput(base_url, name, level, args.calls))
        direct_rate = _direct_throughput(bootstrap, level, args.calls)
        _row(f"invocations/s @ c={level}", http_rate, direct_rate, digits=0)


def _direct_call(bootstrap: Path) -> None:
    completed = subprocess.run(
        [str(bootstrap)], input=_REQUEST_BYTES, capture_output=True, check=True
    )
    json.loads(completed.stdout)


def _warm_direct_latencies(bootstrap: Path, count: int, gap_s: float) -> list[float]:
    timings: list[float] = []
    for _ in range(count):
        process = subprocess.Popen(
            [str(bootstrap)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        time.sleep(gap_s)  # As for the pool: the process has finished starting.
        started = time.perf_counter()
        stdout, _ = process.communicate(_REQUEST_BYTES)
        json.loads(stdout)
        timings.append(time.perf_counter() - started)
    return timings


def _latencies(
    call: Callable[[], None],
    count: int,
    *,
    gap_s: float = 0.0,
    check_warm: tuple[httpx.Client, str] | None = None,
) -> list[float]:
    timings: list[float] = []
    for _ in range(count):
        if gap_s:
            time.sleep(gap_s)
        started = time.perf_counter()
        if check_warm is not None:
            client, url = check_warm
            response = client.post(url, json=_REQUEST)
            if response.status_code != 200 or response.json()["cold_start"]:
                raise RuntimeError(f"expected a warm invocation, got {response.text}")
        else:
            call()
        timings.append(time.perf_counter() - started)
    return timings


async def _http_throughput(base_url: str, name: str, concurrency: int, calls: int) -> float:
    url = f"/api/functions/{name}/invoke"
    remaining = [calls]
    # One single-connection client per worker: one shared httpx pool costs the client
    # O(connections) per request, which at c=64 made the benchmark measure itself.
    clients = [
        httpx.AsyncClient(base_url=base_url, limits=httpx.Limits(max_connections=1), timeout=120)
        for _ in range(concurrency)
    ]

    async def worker(client: httpx.AsyncClient) -> None:
        while remaining[0] > 0:
            remaining[0] -= 1
            response = await client.post(url, json=_REQUEST)
            if response.status_code != 200:
                raise RuntimeError(f"invoke failed: {response.status_code} {response.text}")

    try:
        await asyncio.gather(*(worker(client) for client in clients[:8]))  # warm-up
        remaining[0] = calls
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for client in clients))
        return calls / (time.perf_counter() - started)
    finally:
        for client in clients:
            await client.aclose()


def _direct_throughput(bootstrap: Path, concurrency: int, calls: int) -> float:
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        for future in [pool.submit(_direct_call, bootstrap) for _ in range(calls)]:
            future.result()
    return calls / (time.perf_counter() - started)


def _row(label: str, http_value: float, direct_value: float, digits: int = 2) -> None:
    ratio = http_value / direct_value if direct_value else float("nan")
    print(f"{label:<28}{http_value:>14.{digits}f}{direct_value:>14.{digits}f}{ratio:>9.2f}")


def _extract(package: bytes, destination: Path) -> Path:
    with zipfile.ZipFile(io.BytesIO(package)) as bundle:
        bundle.extractall(destination)
        for info in bundle.infolist():
            (destination / info.filename).chmod((info.external_attr >> 16) & 0o777)
    return destination


def _deploy(base_url: str, name: str, package: bytes, *, max_concurrency: int) -> None:
    config = base64.b64encode(json.dumps({"max_concurrency": max_concurrency}).encode()).decode()
    response = httpx.put(
        f"{base_url}/api/functions/{name}",
        content=package,
        headers={"Content-Type": "application/zip", "X-Blueprint-Config": config},
    )
    response.raise_for_status()


def _start_server(data_dir: Path, port: int, log_path: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "providers.reference_server", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--data-dir", str(data_dir)]

    def answers() -> bool:
        try:
            httpx.get(f"http://127.0.0.1:{port}/api/functions/readiness-probe", timeout=2)
        except httpx.TransportError:
            return False
        return True

    return start_process(command, log_path, ready=answers, what="the reference server")


if __name__ == "__main__":
    main()
