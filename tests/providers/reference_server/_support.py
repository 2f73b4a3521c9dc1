"""Helpers to run the reference server as a real process and talk to it over HTTP.

Every server gets its own free port and data dir; readiness is a polled condition with a
deadline, never a sleep. Bootstraps are tiny shell or Python programs written by the tests;
they talk back through files in a folder passed as an env var (which also proves env_vars
reach the process).
"""

from __future__ import annotations

import base64
import fcntl
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.processes import free_port

_REPO_ROOT = Path(__file__).resolve().parents[3]
_START_DEADLINE_S = 60.0
_STOP_DEADLINE_S = 30.0

# A Python bootstrap driven by its args: when they decode to a JSON object it is a command,
# otherwise the bytes are echoed back. It writes `started-<pid>` in $OUT_DIR (when set)
# before reading stdin, which lets warm-pool tests see pre-started processes.
PROBE_BOOTSTRAP = f"""#!{sys.executable}
import json, os, sys, time
out_dir = os.environ.get("OUT_DIR")
if out_dir:
    open(os.path.join(out_dir, "started-%d" % os.getpid()), "w").close()
request = json.loads(sys.stdin.buffer.read())
data = bytes(request["args"])
def reply(result, success=True, error=None):
    body = {{"job_id": request["job_id"], "result": list(result), "success": success}}
    if error is not None:
        body["error"] = error
    sys.stdout.write(json.dumps(body))
if not data.startswith(b"{{"):
    reply(data)
    sys.exit(0)
command = json.loads(data)
op = command["op"]
if op == "whoami":
    answer = {{"pid": os.getpid(), "env": dict(os.environ), "cwd": os.getcwd()}}
    reply(json.dumps(answer).encode())
elif op == "fail":
    reply(b"", success=False, error=command["error"])
elif op == "exit":
    sys.stderr.write("exiting on purpose\\n")
    sys.exit(command["status"])
elif op == "garbage":
    sys.stdout.write("this is not json")
elif op == "string_result":
    sys.stdout.write(json.dumps({{"result": command["text"], "success": True}}))
elif op == "alloc":
    block = bytearray(command["mb"] * 1024 * 1024)
    reply(b"allocated")
"""


@dataclass
class ServerProcess:
    """A reference server running as `python -m providers.reference_server`."""

    data_dir: Path
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    api_key: str | None = None
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    client: httpx.Client | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def http(self) -> httpx.Client:
        assert self.client is not None, "server not started"
        return self.client

    def start(self) -> ServerProcess:
        self.port = free_port()
        self.log_path = self.data_dir.parent / f"server-{self.port}.log"
        command = [
            sys.executable,
            "-m",
            "providers.reference_server",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            *self.extra_args,
        ]
        env = {**os.environ, **self.env}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, cwd=_REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        self.client = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(120.0, connect=10.0),
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=256),
        )
        deadline = time.monotonic() + _START_DEADLINE_S
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited at start-up: {self.log()}")
            try:
                # Any answer (404 for this id, 401 without a key) means it is serving.
                self.client.get("/api/functions/readiness-probe", timeout=2.0)
                return self
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"server not ready in time: {self.log()}") from None
                time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=_STOP_DEADLINE_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=_STOP_DEADLINE_S)

    def restart(self, sig: int = signal.SIGTERM) -> ServerProcess:
        self.stop(sig)
        return self.start()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def deploy(
        self, function_id: str, package: bytes, config: dict[str, Any] | None = None
    ) -> httpx.Response:
        headers = {"Content-Type": "application/zip"}
        if config is not None:
            headers["X-Blueprint-Config"] = config_header(config)
        return self.http.put(f"/api/functions/{function_id}", content=package, headers=headers)

    def invoke(self, function_id: str, args: Any, job_id: int = 7) -> httpx.Response:
        return self.http.post(
            f"/api/functions/{function_id}/invoke", json={"job_id": job_id, "args": args}
        )

    def command(self, function_id: str, **command: Any) -> httpx.Response:
        """Invoke the probe bootstrap with a JSON command as its args."""
        return self.invoke(function_id, list(json.dumps(command).encode()))


class FileGate:
    """A file held with an exclusive flock until `open()`; bootstraps wait on it with
    `flock -s "$GATE" true`, so a test decides when they go on."""

    def __init__(self, path: Path) -> None:
        path.touch()
        self.path = path
        self._handle = path.open("r")
        fcntl.flock(self._handle, fcntl.LOCK_EX)

    def open(self) -> None:
        if not self._handle.closed:
            self._handle.close()  # Closing the only descriptor drops the lock.


class RawInvocation:
    """An invoke request on a bare socket, so the test decides when the client goes away."""

    def __init__(self, server: ServerProcess, function_id: str, args: Any, job_id: int = 7):
        body = json.dumps({"job_id": job_id, "args": args}).encode()
        head = (
            f"POST /api/functions/{function_id}/invoke HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{server.port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        self._socket = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        self._socket.sendall(head.encode() + body)

    def response(self, timeout_s: float = 60.0) -> tuple[int, Any]:
        """The status and JSON body (None when empty), read until the server closes."""
        self._socket.settimeout(timeout_s)
        data = bytearray()
        while chunk := self._socket.recv(65536):
            data += chunk
        head, _, body = bytes(data).partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        return status, json.loads(body) if body else None

    def close(self) -> None:
        """Go away without reading the reply."""
        self._socket.close()


def config_header(config: dict[str, Any]) -> str:
    """The X-Blueprint-Config value for `config`."""
    return base64.b64encode(json.dumps(config).encode()).decode()


def make_zip(files: Mapping[str, str | bytes], *, mode: int = 0o755) -> bytes:
    """A zip holding `files` (name to content) as regular files with `mode`."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        for name, content in files.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o100000 | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            bundle.writestr(info, content)
    return buffer.getvalue()


def result_bytes(response: httpx.Response) -> bytes:
    """The invoke reply's result as bytes."""
    return bytes(response.json()["result"])


def result_json(response: httpx.Response) -> Any:
    """The invoke reply's result decoded as JSON (what the probe's commands answer)."""
    return json.loads(result_bytes(response))


def process_gone(pid: int) -> bool:
    """True when `pid` no longer runs (absent, or a zombie nobody reaped yet)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return True
    return state in ("Z", "X")
