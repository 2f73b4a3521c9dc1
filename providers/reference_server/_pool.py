"""A function's runtime: its concurrency gate and its pool of pre-started (warm) instances.

Warm instances are bootstrap processes already spawned and blocked reading stdin. A warm
invocation takes one (skipping fork/exec and the interpreter's start-up and imports) and the
pool is refilled in the background, so it keeps its size while the function is in use. When
no invocation has used the pool for `warm_idle_ttl_s`, its instances are killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import deque

from ._gate import ConcurrencyGate
from ._limits import ServerLimits
from ._package import BOOTSTRAP_NAME
from ._runtime import Instance, LaunchSpec, Outcome, SpawnError
from ._store import Deployment

__all__ = ["FunctionRuntime"]

_log = logging.getLogger(__name__)

# The environment every bootstrap starts from; the server's own variables (which may hold
# its API key) never reach a function. The config's env_vars are laid over it.
_BASE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "TMPDIR": "/tmp",
}


class FunctionRuntime:
    """Runs one deployment's invocations within its limits, cold or from the warm pool.

    `deployment` is the deployment it was built for, so a caller can tell a runtime left
    from an earlier deployment of the same id.
    """

    def __init__(self, deployment: Deployment, limits: ServerLimits) -> None:
        self.deployment = deployment
        config = deployment.config
        env = {
            **_BASE_ENV,
            "HOME": str(deployment.code_dir),
            "BLUEPRINT_FUNCTION_ID": deployment.function_id,
            "BLUEPRINT_FUNCTION_MEMORY_MB": str(config.memory_mb),
            "BLUEPRINT_FUNCTION_TIMEOUT_SECS": str(config.timeout_secs),
            **config.env_vars,
        }
        self._spec = LaunchSpec(
            bootstrap=deployment.code_dir / BOOTSTRAP_NAME,
            cwd=deployment.code_dir,
            env=env,
            memory_mb=config.memory_mb,
        )
        self._function_id = deployment.function_id
        self._timeout_s = float(config.timeout_secs)
        self._max_concurrency = config.max_concurrency
        self._limits = limits
        self._gate = ConcurrencyGate(
            deployment.function_id, config.max_concurrency, limits.max_queued_per_function
        )
        self._idle: deque[Instance] = deque()
        self._running: set[Instance] = set()
        self._target_idle = 0
        self._last_used_s = time.monotonic()
        self._ttl_timer: asyncio.TimerHandle | None = None
        self._refill_scheduled = False
        self._closed = False

    async def invoke(self, request: bytes) -> tuple[Instance, bool]:
        """Start one invocation once a concurrency slot is free.

        The slot is held until the bootstrap's process has exited, not just until its
        reply, so `max_concurrency` keeps bounding the processes alive at once (a
        bootstrap's shutdown after its reply still uses memory and CPU).

        Returns
        -------
        tuple[Instance, bool]
            The started instance (await its `output`) and whether it needed a new process
            (a cold start).

        Raises
        ------
        ApiError
            THROTTLED when the function's queue is full.
        SpawnError
            When a cold start cannot exec the bootstrap.
        asyncio.CancelledError
            When cancelled while queued (nothing ran then).
        """
        await self._gate.acquire()
        with contextlib.ExitStack() as on_error:
            on_error.callback(self._gate.release)
            instance = self._take_warm()
            cold_start = instance is None
            if instance is None:
                instance = Instance.spawn(self._spec)
            instance.start(
                request, timeout_s=self._timeout_s, max_output_bytes=self._limits.max_output_bytes
            )
            self._running.add(instance)
            # From here the process's exit gives the slot back.
            on_error.pop_all()
        instance.add_finish_callback(functools.partial(self._on_finished, instance, cold_start))
        return instance, cold_start

    def warm(self, instances: int) -> int:
        """Keep `instances` pre-started processes (capped by max_concurrency) from now on.

        Returns
        -------
        int
            How many warm instances are alive after the call.

        Raises
        ------
        SpawnError
            When the bootstrap cannot be started at all.
        """
        wanted = min(instances, self._max_concurrency, self._limits.max_warm_instances)
        self._target_idle = wanted
        self._last_used_s = time.monotonic()
        self._drop_dead()
        while len(self._idle) > wanted:
            self._idle.pop().kill()
        while len(self._idle) < wanted:
            self._idle.append(Instance.spawn(self._spec))
        self._schedule_ttl(self._limits.warm_idle_ttl_s)
        return len(self._idle)

    def close(self) -> None:
        """Kill the warm instances and stop refilling; running invocations finish alone."""
        self._closed = True
        self._target_idle = 0
        if self._ttl_timer is not None:
            self._ttl_timer.cancel()
            self._ttl_timer = None
        while self._idle:
            self._idle.pop().kill()

    def kill_running(self) -> None:
        """Kill every invocation's process, including those that replied but still run."""
        for instance in list(self._running):
            instance.kill()

    def _on_finished(self, instance: Instance, cold_start: bool, _outcome: Outcome) -> None:
        self._running.discard(instance)
        self._gate.release()
        if not cold_start:
            self._schedule_refill()

    def _take_warm(self) -> Instance | None:
        if self._target_idle == 0:
            return None
        self._last_used_s = time.monotonic()
        self._drop_dead()
        if not self._idle:
            self._schedule_refill()
            return None
        return self._idle.popleft()

    def _schedule_refill(self) -> None:
        # Refilling once the warm invocation is over keeps a starting interpreter from
        # competing for CPU with the invocation it would replace.
        if not self._refill_scheduled:
            self._refill_scheduled = True
            asyncio.get_running_loop().call_soon(self._refill)

    def _refill(self) -> None:
        self._refill_scheduled = False
        if self._closed:
            return
        try:
            while len(self._idle) < self._target_idle:
                self._idle.append(Instance.spawn(self._spec))
        except SpawnError as exc:
            _log.warning("cannot refill warm pool of %s: %s", self._function_id, exc)

    def _drop_dead(self) -> None:
        # A warm instance can die while idle (its bootstrap crashed at start-up): never hand
        # one out.
        alive = [instance for instance in self._idle if instance.alive]
        if len(alive) != len(self._idle):
            for instance in self._idle:
                if not instance.alive:
                    instance.kill()
            self._idle = deque(alive)

    def _schedule_ttl(self, delay_s: float) -> None:
        if self._ttl_timer is not None:
            self._ttl_timer.cancel()
        self._ttl_timer = asyncio.get_running_loop().call_later(delay_s, self._on_ttl)

    def _on_ttl(self) -> None:
        self._ttl_timer = None
        idle_for_s = time.monotonic() - self._last_used_s
        ttl_s = self._limits.warm_idle_ttl_s
        if idle_for_s < ttl_s:
            self._schedule_ttl(ttl_s - idle_for_s)
            return
        self._target_idle = 0
        while self._idle:
            self._idle.pop().kill()
