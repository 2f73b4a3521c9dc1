"""One bootstrap process serving exactly one request, driven from the event loop.

The process is started with `subprocess.Popen` (vfork-fast: no preexec hook), its pipes are
driven with non-blocking `add_reader`/`add_writer` callbacks, its exit is watched through a
pidfd, and this module reaps it. That keeps the exact exit status and lets the group be
killed while the leader is still a zombie (so its pid, the group id, cannot be reused yet).

Each process leads its own process group, so a timeout (or the end of the leader) kills the
whole group: a shell bootstrap's `sleep` cannot outlive it or hold stdout open. A group, not
a session: with the kernel's autogroup scheduling every session gets the CPU share of a whole
login, and 64 running invocations would starve the server's event loop.

Memory limit: `memory_mb` becomes RLIMIT_DATA (heap and private writable mappings, much
closer to what a Lambda-style "memory" means than RLIMIT_AS, which breaks runtimes that
reserve large address ranges). It is applied with `prlimit` right after `exec`, before the
bootstrap's own code runs in practice, because a preexec hook would force fork() and cost
~2 ms of blocked event loop per start instead of ~0.15 ms.

Memory figure: `wait4`'s ru_maxrss alone would lie, because `exec` from a vfork child folds
the *server's* high-water mark into it. So it is trusted only when it exceeds the server's
own peak (read right after the spawn): then it can only be the bootstrap's. Otherwise the
bootstrap's own VmHWM (from /proc/<pid>/status, sampled at each stdout write, i.e. up to
its reply) is reported, or None when the process was already gone at every sample.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Instance", "LaunchSpec", "Outcome", "SpawnError"]

_READ_CHUNK_BYTES = 256 * 1024
_STDERR_TAIL_BYTES = 8 * 1024
# After the leader exits, leftover writers are killed; this bounds the wait for their EOF in
# case one escaped into another process group.
_EOF_GRACE_S = 1.0


@dataclass(frozen=True)
class LaunchSpec:
    """How to start a function's bootstrap."""

    bootstrap: Path
    cwd: Path
    env: Mapping[str, str]
    memory_mb: int


@dataclass(frozen=True)
class Outcome:
    """What one run of a bootstrap produced.

    `exit_code` follows `subprocess` (negative: killed by that signal). `peak_rss_kb` is the
    bootstrap's peak resident set, or None when it could not be measured.
    """

    stdout: bytes
    stderr_tail: bytes
    exit_code: int | None
    timed_out: bool
    output_overflow: bool
    execution_s: float
    peak_rss_kb: int | None


class SpawnError(Exception):
    """The bootstrap could not be started (missing, not executable, bad interpreter line)."""


class Instance:
    """A started bootstrap waiting on stdin for its one request.

    Create with `Instance.spawn`; then either `run` it once or `kill` it. Both paths close
    every descriptor and reap the process.
    """

    def __init__(
        self, process: subprocess.Popen[bytes], stdin_fd: int, stdout_fd: int, stderr_fd: int
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._process = process
        self.pid = process.pid
        self.spawned_at_s = time.monotonic()
        # Read after the exec: an upper bound of what exec folded into the child's maxrss.
        self._server_peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        self._stdin_fd: int | None = stdin_fd
        self._stdout_fd: int | None = stdout_fd
        self._stderr_fd: int | None = stderr_fd
        self._pidfd: int | None = os.pidfd_open(self.pid)
        self._loop.add_reader(self._pidfd, self._on_exit)
        self._exit_code: int | None = None
        self._peak_rss_kb: int | None = None
        self._exited = False
        self._killed = False
        self._used = False
        self._stdout: list[bytes] = []
        self._stdout_bytes = 0
        self._max_output_bytes = 0
        self._stderr = bytearray()
        self._pending_input = memoryview(b"")
        self._timed_out = False
        self._overflow = False
        self._timers: list[asyncio.TimerHandle] = []
        self._done: asyncio.Future[None] | None = None

    @classmethod
    def spawn(cls, spec: LaunchSpec) -> Instance:
        """Start the bootstrap; must be called on the event loop thread.

        Raises
        ------
        SpawnError
            When `exec` fails.
        """
        stdin_r, stdin_w = os.pipe()
        stdout_r, stdout_w = os.pipe()
        stderr_r, stderr_w = os.pipe()
        try:
            process = subprocess.Popen(
                [str(spec.bootstrap)],
                stdin=stdin_r,
                stdout=stdout_w,
                stderr=stderr_w,
                cwd=spec.cwd,
                env=dict(spec.env),
                process_group=0,
            )
        except OSError as exc:
            for fd in (stdin_w, stdout_r, stderr_r):
                os.close(fd)
            raise SpawnError(f"cannot start bootstrap: {exc.strerror or exc}") from exc
        finally:
            for fd in (stdin_r, stdout_w, stderr_w):
                os.close(fd)
        limit_bytes = spec.memory_mb * 1024 * 1024
        with contextlib.suppress(OSError):
            resource.prlimit(process.pid, resource.RLIMIT_DATA, (limit_bytes, limit_bytes))
        for fd in (stdin_w, stdout_r, stderr_r):
            os.set_blocking(fd, False)
        return cls(process, stdin_w, stdout_r, stderr_r)

    @property
    def alive(self) -> bool:
        """Whether the process still waits for (or works on) its request."""
        return not self._exited and not self._killed

    async def run(self, request: bytes, *, timeout_s: float, max_output_bytes: int) -> Outcome:
        """Send `request` on stdin, collect stdout until exit, and reap the process.

        The process group is killed on timeout, when stdout passes `max_output_bytes`, or
        when the caller is cancelled.
        """
        if self._used:
            raise RuntimeError("an instance serves exactly one request")
        self._used = True
        self._max_output_bytes = max_output_bytes
        self._done = self._loop.create_future()
        started = time.monotonic()
        self._timers.append(self._loop.call_later(timeout_s, self._on_timeout))
        assert self._stdout_fd is not None and self._stderr_fd is not None
        self._loop.add_reader(self._stdout_fd, self._on_stdout)
        self._loop.add_reader(self._stderr_fd, self._on_stderr)
        self._pending_input = memoryview(request)
        self._write_input()
        try:
            await self._done
        except BaseException:
            self.kill()
            raise
        return Outcome(
            stdout=b"".join(self._stdout),
            stderr_tail=bytes(self._stderr[-_STDERR_TAIL_BYTES:]),
            exit_code=self._exit_code,
            timed_out=self._timed_out,
            output_overflow=self._overflow,
            execution_s=time.monotonic() - started,
            peak_rss_kb=self._peak_rss_kb,
        )

    def kill(self) -> None:
        """Kill the process group now; the exit watcher reaps it. Safe to call twice."""
        self._killed = True
        self._kill_group()
        self._close_input()
        self._close_output("stdout")
        self._close_output("stderr")
        self._maybe_done()

    # Callbacks, all on the event loop thread.

    def _write_input(self) -> None:
        if self._stdin_fd is None:
            return
        try:
            while self._pending_input:
                written = os.write(self._stdin_fd, self._pending_input)
                self._pending_input = self._pending_input[written:]
        except BlockingIOError:
            self._loop.add_writer(self._stdin_fd, self._write_input)
            return
        except BrokenPipeError:
            pass  # The bootstrap stopped reading (or exited): its reply will say why.
        self._close_input()

    def _on_stdout(self) -> None:
        assert self._stdout_fd is not None
        try:
            chunk = os.read(self._stdout_fd, _READ_CHUNK_BYTES)
        except BlockingIOError:
            return
        if not chunk:
            self._close_output("stdout")
            return
        self._stdout.append(chunk)
        self._stdout_bytes += len(chunk)
        if not self._exited:
            self._peak_rss_kb = _peak_rss_kb(self.pid) or self._peak_rss_kb
        if self._stdout_bytes > self._max_output_bytes:
            self._overflow = True
            self._kill_group()
            self._close_output("stdout")

    def _on_stderr(self) -> None:
        assert self._stderr_fd is not None
        try:
            chunk = os.read(self._stderr_fd, _READ_CHUNK_BYTES)
        except BlockingIOError:
            return
        if not chunk:
            self._close_output("stderr")
            return
        self._stderr += chunk
        if len(self._stderr) > 4 * _STDERR_TAIL_BYTES:
            del self._stderr[:-_STDERR_TAIL_BYTES]

    def _on_timeout(self) -> None:
        self._timed_out = True
        self._kill_group()
        if self._exited:
            self._close_output("stdout")
            self._close_output("stderr")
            self._maybe_done()

    def _on_exit(self) -> None:
        assert self._pidfd is not None
        self._loop.remove_reader(self._pidfd)
        # The leader is a zombie now, so its pid (the group id) cannot be reused yet:
        # killing the group here is safe and ends any background children holding stdout.
        self._kill_group()
        try:
            _, status, usage = os.wait4(self.pid, 0)
        except ChildProcessError:
            self._exit_code = self._process.returncode
        else:
            self._exit_code = os.waitstatus_to_exitcode(status)
            if usage.ru_maxrss > self._server_peak_kb:
                self._peak_rss_kb = usage.ru_maxrss
            # Popen must not try to reap this pid again (its own _cleanup would).
            self._process.returncode = self._exit_code
        os.close(self._pidfd)
        self._pidfd = None
        self._exited = True
        self._timers.append(self._loop.call_later(_EOF_GRACE_S, self._on_eof_grace))
        self._maybe_done()

    def _on_eof_grace(self) -> None:
        self._close_output("stdout")
        self._close_output("stderr")
        self._maybe_done()

    # Helpers.

    def _kill_group(self) -> None:
        if self._exited:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)

    def _close_input(self) -> None:
        if self._stdin_fd is not None:
            self._loop.remove_writer(self._stdin_fd)
            os.close(self._stdin_fd)
            self._stdin_fd = None

    def _close_output(self, stream: str) -> None:
        fd = self._stdout_fd if stream == "stdout" else self._stderr_fd
        if fd is None:
            return
        self._loop.remove_reader(fd)
        os.close(fd)
        if stream == "stdout":
            self._stdout_fd = None
        else:
            self._stderr_fd = None
        self._maybe_done()

    def _maybe_done(self) -> None:
        finished = self._exited and self._stdout_fd is None and self._stderr_fd is None
        if not finished:
            return
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        self._close_input()
        if self._done is not None and not self._done.done():
            self._done.set_result(None)


def _peak_rss_kb(pid: int) -> int | None:
    """VmHWM of a live (not yet reaped) child, in KiB; None once it is a zombie."""
    try:
        with open(f"/proc/{pid}/status", "rb") as status:
            text = status.read()
    except OSError:
        return None
    start = text.find(b"VmHWM:")
    if start < 0:
        return None
    return int(text[start + 6 : text.index(b"kB", start)])
