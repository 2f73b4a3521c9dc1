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

Two moments matter in a run. The *output* is final when stdout reaches EOF (or is closed
because the run was killed): a bootstrap that closes its stdout right after replying is
answered then, without waiting for its interpreter's shutdown. The run is *finished* once the
process has exited, been reaped and its stderr has reached EOF: the exit status and stderr
are only known then, and only then does the process stop counting against its function.

Orphans: a warm instance blocks reading stdin, whose only writer is the server, so if the
server dies (even by SIGKILL) the instance reads EOF and ends. A running invocation is not
stopped that way: it ends when it finishes or at its next write to stdout (EPIPE/SIGPIPE).
PR_SET_PDEATHSIG is not used: it needs code in the child between fork and exec, and a
preexec hook forces fork() (see above) while a `setpriv --pdeathsig KILL` wrapper costs one
more exec (+0.9 ms per start measured, about 13 % of a shell cold start) and would still
only cover the group leader, not its children. Run the server under a supervisor that kills
its whole cgroup (systemd `KillMode=control-group`, a container) where that matters.

Memory figure: the bootstrap's peak RSS up to the moment its output was final. It is its own
VmHWM (from /proc/<pid>/status), sampled at each stdout read and once more at stdout EOF
while the process is still alive, so the peak of an interpreter's shutdown after a reply is
not counted. When the process has already exited by then, `wait4`'s ru_maxrss is used, but
only if it exceeds the server's own peak (read right after the spawn), because `exec` from a
vfork child folds the *server's* high-water mark into it. None when no figure is sound.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
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
    """What one run of a bootstrap produced, as known when it was taken.

    `exited` says whether the process had ended by then; `exit_code` follows `subprocess`
    (negative: killed by that signal) and is None while running or when unknown.
    `stderr_tail` holds what arrived so far. `peak_rss_kb` is the bootstrap's peak resident
    set up to its final output, or None when it could not be measured.
    """

    stdout: bytes
    stderr_tail: bytes
    exited: bool
    exit_code: int | None
    timed_out: bool
    output_overflow: bool
    execution_s: float
    peak_rss_kb: int | None


class SpawnError(Exception):
    """The bootstrap could not be started (missing, not executable, bad interpreter line)."""


class Instance:
    """A started bootstrap waiting on stdin for its one request.

    Create with `Instance.spawn`; then either `start` it once and await `output` (and
    `finished` when the exit status matters), or `kill` it. Every path closes each
    descriptor and reaps the process, whether or not anybody still awaits it.
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
        self._started_s: float | None = None
        self._output_s: float | None = None
        self._stdout: list[bytes] = []
        self._stdout_bytes = 0
        self._max_output_bytes = 0
        self._stderr = bytearray()
        self._pending_input = memoryview(b"")
        self._timed_out = False
        self._overflow = False
        self._timers: list[asyncio.TimerHandle] = []
        self._output_final: asyncio.Future[None] = self._loop.create_future()
        self._finished: asyncio.Future[None] = self._loop.create_future()

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

    def start(self, request: bytes, *, timeout_s: float, max_output_bytes: int) -> None:
        """Send `request` on stdin and start collecting stdout and stderr.

        The process group is killed after `timeout_s` (even when the output was final
        before), or when stdout passes `max_output_bytes`.
        """
        if self._started_s is not None:
            raise RuntimeError("an instance serves exactly one request")
        self._started_s = time.monotonic()
        self._max_output_bytes = max_output_bytes
        self._timers.append(self._loop.call_later(timeout_s, self._on_timeout))
        assert self._stdout_fd is not None and self._stderr_fd is not None
        self._loop.add_reader(self._stdout_fd, self._on_stdout)
        self._loop.add_reader(self._stderr_fd, self._on_stderr)
        self._pending_input = memoryview(request)
        self._write_input()

    async def output(self) -> Outcome:
        """Wait until stdout is final (EOF, or closed by a kill); the process may still run.

        Cancelling the wait kills the process group.
        """
        try:
            # Only this one waiter awaits it, so letting a cancel reach it is harmless.
            await self._output_final
        except BaseException:
            self.kill()
            raise
        return self.outcome()

    async def finished(self) -> Outcome:
        """Wait until the process is reaped and stderr is complete.

        Cancelling the wait kills the process group.
        """
        try:
            # Shielded: the finish callbacks (which free the slot) hang on this future.
            await asyncio.shield(self._finished)
        except BaseException:
            self.kill()
            raise
        return self.outcome()

    def add_finish_callback(self, callback: Callable[[Outcome], None]) -> None:
        """Call `callback` with the final outcome once the run is finished (soon if it is)."""
        self._finished.add_done_callback(lambda _: callback(self.outcome()))

    def outcome(self) -> Outcome:
        """What is known of the run now."""
        started_s = self._started_s if self._started_s is not None else self.spawned_at_s
        ended_s = self._output_s if self._output_s is not None else time.monotonic()
        return Outcome(
            stdout=b"".join(self._stdout),
            stderr_tail=bytes(self._stderr[-_STDERR_TAIL_BYTES:]),
            exited=self._exited,
            exit_code=self._exit_code,
            timed_out=self._timed_out,
            output_overflow=self._overflow,
            execution_s=ended_s - started_s,
            peak_rss_kb=self._peak_rss_kb,
        )

    def kill(self) -> None:
        """Kill the process group now; the exit watcher reaps it. Safe to call twice."""
        self._killed = True
        self._kill_group()
        self._close_input()
        self._close_output("stdout")
        self._close_output("stderr")

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
            # The reply is complete: its figure is the peak so far, not the interpreter's
            # shutdown that may follow.
            self._sample_peak_rss()
            self._close_output("stdout")
            return
        self._stdout.append(chunk)
        self._stdout_bytes += len(chunk)
        self._sample_peak_rss()
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
            if self._output_s is None and usage.ru_maxrss > self._server_peak_kb:
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

    # Helpers.

    def _sample_peak_rss(self) -> None:
        if not self._exited:
            self._peak_rss_kb = _peak_rss_kb(self.pid) or self._peak_rss_kb

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
            self._output_s = time.monotonic()
            # Complete now: joined once, so each later outcome() (one per waiter and finish
            # callback) gets this one bytes object instead of copying the output again.
            self._stdout = [b"".join(self._stdout)]
        else:
            self._stderr_fd = None
        self._maybe_done()

    def _maybe_done(self) -> None:
        # done() is also true of a future cancelled with its waiter.
        if self._stdout_fd is None and not self._output_final.done():
            self._output_final.set_result(None)
        finished = self._exited and self._stdout_fd is None and self._stderr_fd is None
        if not finished or self._finished.done():
            return
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        self._close_input()
        self._finished.set_result(None)


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
