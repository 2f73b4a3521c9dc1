"""The workers' Redis result backend: a result is stored with one atomic script.

Celery's Redis backend stores a result in two round trips: a GET (a stored success is never
overwritten, so a redelivered call cannot replace the outcome the runner already has), then
SET and PUBLISH. Between the two another worker running the same redelivered call can store
its own outcome. :class:`ResultBackend` does the same check, write and notification in one
Lua script: one round trip instead of two, and no window between the check and the write.

Everything else (reading results, pub/sub, retries of a store while Redis is away) is
Celery's ``RedisBackend``. Only workers use it (``workers.app``): readers need nothing else.
"""

from __future__ import annotations

from typing import Any

from celery import states
from celery.backends.base import BackendStoreError
from celery.backends.redis import RedisBackend
from kombu.utils.encoding import bytes_to_str

__all__ = ["BACKEND_PATH", "ResultBackend"]

#: What ``result_backend`` names, before ``+redis://...``, to use :class:`ResultBackend`.
BACKEND_PATH = "workers._results:ResultBackend"

# KEYS: result keys. ARGV[1]: expiry in seconds (0: none); ARGV[1 + i]: the encoded meta
# of KEYS[i]. Each key is stored (and published) unless a success is already there; returns
# how many were stored. One key for a single call, several for the calls of a batch.
_STORE_UNLESS_SUCCESS = """
local expires = tonumber(ARGV[1])
local stored = 0
for i, key in ipairs(KEYS) do
    local current = redis.call('GET', key)
    local keep = false
    if current then
        local ok, meta = pcall(cjson.decode, current)
        keep = ok and type(meta) == 'table' and meta['status'] == 'SUCCESS'
    end
    if not keep then
        if expires > 0 then
            redis.call('SET', key, ARGV[i + 1], 'EX', expires)
        else
            redis.call('SET', key, ARGV[i + 1])
        end
        redis.call('PUBLISH', key, ARGV[i + 1])
        stored = stored + 1
    end
end
return stored
"""


class ResultBackend(RedisBackend):  # type: ignore[misc]
    """Celery's Redis result backend, storing each result with one atomic script."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._store_script: Any = None

    def _store_result(
        self,
        task_id: str,
        result: Any,
        state: str,
        traceback: Any = None,
        request: Any = None,
        **kwargs: Any,
    ) -> Any:
        meta = self._get_result_meta(
            result=result, state=state, traceback=traceback, request=request
        )
        meta["task_id"] = bytes_to_str(task_id)
        value = self.encode(meta)
        if isinstance(value, str) and len(value) > self._MAX_STR_VALUE_SIZE:
            raise BackendStoreError(
                "value too large for Redis backend", state=state, task_id=task_id
            )
        expires = self.failure_expires if state == states.FAILURE else self.expires
        self.ensure(self._store, ([self.get_key_for_task(task_id)], [value], expires or 0))
        return result

    def store_successes(self, results: list[tuple[str, Any]]) -> None:
        """Store ``(task_id, value)`` pairs as successful tasks in one round trip.

        What the execute task's own store does for one result, for the calls of a batch:
        each is kept out only by a success already stored, and published for the runner.
        """
        keys = []
        values = []
        for task_id, result in results:
            meta = self._get_result_meta(
                result=result, state=states.SUCCESS, traceback=None, request=None
            )
            meta["task_id"] = bytes_to_str(task_id)
            keys.append(self.get_key_for_task(task_id))
            values.append(self.encode(meta))
        self.ensure(self._store, (keys, values, self.expires or 0))

    def _store(self, keys: list[bytes | str], values: list[str | bytes], expires_s: float) -> None:
        if self._store_script is None:
            # One script object per backend: it runs by SHA and reloads itself if Redis
            # forgot it (a restart).
            self._store_script = self.client.register_script(_STORE_UNLESS_SUCCESS)
        self._store_script(keys=keys, args=[int(expires_s), *values])
