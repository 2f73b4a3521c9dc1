"""The Redis broker transport of workers and runners: kombu's, with no window to lose a call.

Selected for ``redis://`` brokers by :meth:`dispatcher.settings.Settings.celery_connection_config`.

**Pop and record in one step.** kombu's consumer pops a message with ``BRPOP`` and records it
as unacknowledged afterwards, in a second round trip: a process killed between the two loses
the message for good (celery/celery#7950). Here the blocking command only waits: each
published message comes with a token on its queue's wake list (:func:`dispatcher.keys.wake_key`),
the consumer blocks on the wake lists of its queues, and once woken (or when the wait times
out) one Lua script pops the next message of its queues *and* records it (kombu's
``unacked`` hash and index, plus the consumer's in-flight hash, :mod:`dispatcher._consumers`).
A consumer killed at any instant leaves every call either in its queue or recorded under its
id. A token is only a hint: a lost one delays a message until the next wait times out, and a
message from a publisher that pushes no token (a stock kombu producer) is found the same way.

**Dead consumers are found in seconds.** Each consuming channel keeps a liveness key renewed
by its own thread, and every worker restores the calls of consumers whose key has lapsed
(:class:`dispatcher._consumers.ConsumerLiveness`). The visibility timeout stays as a
backstop only.

**Restores never end the worker.** A restore at channel close (a lost connection) that fails
is logged, not raised: the calls stay recorded and the liveness expiry brings them back.

**One client per channel.** kombu's Redis channel builds a new ``redis.Redis`` around its
connection pool for every acknowledgement (~0.1 ms of Python each). A ``redis.Redis`` is safe
to share between threads and green threads, so the channel keeps one, rebuilt when the
channel replaces its pool after a reconnect.

**Restores on a clock.** Without Celery's event loop (the gevent pool) kombu scans for
unacknowledged calls after every poll that delivered nothing; the poller here scans at most
twice per ``unacked_restore_interval``, which is what the event loop's timer does anyway.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import dumps, loads

from dispatcher._consumers import (
    WAKE_TOKEN,
    ConsumerLiveness,
    fault_point,
    new_consumer_id,
    renew_delivery,
)
from dispatcher.keys import consumer_in_flight_key, wake_key
from dispatcher.settings import DEFAULT_LIVENESS_TTL_S, DEFAULT_RESTORE_INTERVAL_S

__all__ = ["Transport"]

logger = logging.getLogger("blueprint_faas.broker")

# KEYS: unacked hash, unacked index, the consumer's in-flight hash, then the lists to pop
# from in order. ARGV[1]: the time of the record. Returns {list, message} or nil.
# The unacked record is kombu's ``[message, exchange, routing_key]``, built around the raw
# message text (decoding and re-encoding it in Lua could change it: cjson turns [] into {}).
_POP_AND_RECORD = """
for i = 4, #KEYS do
    local item = redis.call('RPOP', KEYS[i])
    if item then
        local ok, message = pcall(cjson.decode, item)
        local properties = ok and type(message) == 'table' and message['properties']
        local tag = type(properties) == 'table' and properties['delivery_tag']
        if type(tag) == 'string' then
            local info = properties['delivery_info']
            local exchange, routing_key = '', ''
            if type(info) == 'table' then
                if type(info['exchange']) == 'string' then exchange = info['exchange'] end
                if type(info['routing_key']) == 'string' then routing_key = info['routing_key'] end
            end
            local record = '[' .. item .. ',' .. cjson.encode(exchange) .. ','
                .. cjson.encode(routing_key) .. ']'
            redis.call('HSET', KEYS[1], tag, record)
            redis.call('ZADD', KEYS[2], ARGV[1], tag)
            redis.call('HSET', KEYS[3], tag, KEYS[i])
        end
        return {KEYS[i], item}
    end
end
return nil
"""


class _QoS(kombu_redis.QoS):  # type: ignore[misc]
    def append(self, message: Any, delivery_tag: str) -> None:
        if self.channel._take_recorded(delivery_tag):
            virtual.QoS.append(self, message, delivery_tag)  # recorded by the pop already
            return
        super().append(message, delivery_tag)

    def _remove_from_indices(self, delivery_tag: str, pipe: Any = None) -> Any:
        pipe = super()._remove_from_indices(delivery_tag, pipe)
        in_flight_key = self.channel.in_flight_key
        return pipe if in_flight_key is None else pipe.hdel(in_flight_key, delivery_tag)

    def restore_unacked(self, client: Any = None) -> None:
        try:
            super().restore_unacked(client)
        except Exception as error:  # Redis away: the calls stay recorded under our id
            logger.warning(
                "could not restore %d unacknowledged call(s) now (%r); they return to their "
                "queues once this consumer's liveness lapses",
                len(self._delivered),  # type: ignore[arg-type]  # kombu declares it None
                error,
            )
            self._delivered.clear()  # type: ignore[attr-defined]


class _Channel(kombu_redis.Channel):  # type: ignore[misc]
    QoS = _QoS

    _shared_client: Any = None
    _liveness: ConsumerLiveness | None = None
    _pop_script: Any = None
    liveness_ttl_s = DEFAULT_LIVENESS_TTL_S
    restore_interval_s = DEFAULT_RESTORE_INTERVAL_S

    from_transport_options = (  # type: ignore[assignment]  # kombu types it as its own tuple
        *kombu_redis.Channel.from_transport_options,
        "liveness_ttl_s",
        "restore_interval_s",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._recorded: set[str] = set()
        self._popping: list[str] = []

    @property
    def in_flight_key(self) -> str | None:
        """This consumer's in-flight hash; None for a channel that only publishes."""
        liveness = self._liveness
        return None if liveness is None else consumer_in_flight_key(liveness.consumer_id)

    def _take_recorded(self, delivery_tag: str) -> bool:
        try:
            self._recorded.remove(delivery_tag)
        except KeyError:
            return False
        return True

    # -- publishing ----------------------------------------------------------------------

    def _put(self, queue: str, message: Any, **kwargs: Any) -> None:
        batch = kwargs.get("_publish_batch")
        if batch is not None or (getattr(self, "_expires", None) and queue in self._expires):
            super()._put(queue, message, **kwargs)
            if batch is not None:
                batch.add("lpush", wake_key(queue), WAKE_TOKEN)
            else:
                with self.conn_or_acquire() as client:
                    client.lpush(wake_key(queue), WAKE_TOKEN)
            return
        key = self._q_for_pri(queue, self._get_message_priority(message, reverse=False))
        with self.conn_or_acquire() as client:
            pipe = client.pipeline(transaction=False)
            pipe.lpush(key, dumps(message)).lpush(wake_key(queue), WAKE_TOKEN).execute()

    def _do_restore_message(
        self, payload: Any, exchange: str, routing_key: str, pipe: Any, leftmost: bool = False
    ) -> None:
        renew_delivery(payload)
        super()._do_restore_message(payload, exchange, routing_key, pipe, leftmost)
        for queue in self._lookup(exchange, routing_key):
            pipe.lpush(wake_key(queue), WAKE_TOKEN)

    # -- consuming -----------------------------------------------------------------------

    def basic_consume(self, queue: str, *args: Any, **kwargs: Any) -> Any:
        if queue not in self._fanout_queues and self._liveness is None:
            liveness = ConsumerLiveness(
                self.pool,
                new_consumer_id(),
                unacked_key=self.unacked_key,
                unacked_index_key=self.unacked_index_key,
                queue_of=self._queue_of,
                ttl_s=self.liveness_ttl_s,
                interval_s=self.restore_interval_s,
            )
            liveness.start()
            self._liveness = liveness
        return super().basic_consume(queue, *args, **kwargs)

    def _brpop_start(self, timeout: float | None = None) -> None:
        if timeout is None:
            timeout = getattr(self, "brpop_timeout", 1)
        queues = self._queue_cycle.consume(len(self.active_queues))
        if not queues:
            return
        self._popping = [
            self._q_for_pri(queue, pri) for pri in self.priority_steps for queue in queues
        ]
        self._in_poll = self.client.connection
        self._brpop_sent_at = time.monotonic()  # type: ignore[assignment]
        wake_keys = [wake_key(queue) for queue in queues]
        self.client.connection.send_command("BRPOP", *wake_keys, timeout or 0)

    def _brpop_read(self, **options: Any) -> bool:
        try:
            try:
                # A token or a timeout: either way, look in the queues.
                self.client.parse_response(self.client.connection, "BRPOP", **options)
                popped = self._pop_and_record()
            except self.connection_errors:
                # Disconnect so that the next poll reconnects.
                self.client.connection.disconnect()
                raise
            if not popped:
                raise virtual.Empty()
            source, item = (bytes_to_str(part) for part in popped)
            fault_point("pop")
            queue = self._queue_of(source)
            self._queue_cycle.rotate(queue)
            message = loads(item)
            tag = _delivery_tag(message)
            if tag is not None and self._liveness is not None:
                self._recorded.add(tag)
            self.connection._deliver(message, queue)
            return True
        finally:
            self._in_poll = None  # type: ignore[assignment]  # kombu's own reset
            flush_reauth = getattr(self, "_flush_brpop_reauth", None)
            if flush_reauth is not None:  # kombu >= 5.6: streaming re-authentication
                flush_reauth()

    def _pop_and_record(self) -> Any:
        if self._liveness is None or not self._popping:
            return None
        if self._pop_script is None:
            self._pop_script = self.client.register_script(_POP_AND_RECORD)
        keys = [self.unacked_key, self.unacked_index_key, self._liveness.in_flight_key]
        # On the polling client: its connection is the one the wait just used, now idle.
        return self._pop_script(keys=[*keys, *self._popping], args=[time.time()])

    def _queue_of(self, key: str) -> str:
        return key.rsplit(self.sep, 1)[0]

    def close(self) -> None:
        liveness, self._liveness = self._liveness, None
        if liveness is not None:
            liveness.stop()
        super().close()

    # -- clients -------------------------------------------------------------------------

    def _connparams(self, asynchronous: bool = False) -> Any:
        # A closed channel (a lost connection being replaced) cannot build a pool again: say
        # so as the connection error it is, which every caller handles, not as the
        # AttributeError kombu would raise from the missing connection details.
        connection = self.connection
        if connection is None or connection.client is None:
            raise redis.ConnectionError("this broker channel is closed")
        return super()._connparams(asynchronous=asynchronous)

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:
            return super()._create_client(asynchronous=True)
        client = self._shared_client
        pool = self._pool
        if client is None or pool is None or client.connection_pool is not pool:
            client = self._shared_client = super()._create_client()
        return client


class _Poller(kombu_redis.MultiChannelPoller):  # type: ignore[misc]
    def __init__(self, restore_interval_s: float) -> None:
        super().__init__()
        self._restore_gap_s = restore_interval_s / 2
        self._restored_at = -float("inf")

    def maybe_restore_messages(self) -> Any:
        now = time.monotonic()
        if now - self._restored_at < self._restore_gap_s:
            return None
        self._restored_at = now
        return super().maybe_restore_messages()


class Transport(kombu_redis.Transport):  # type: ignore[misc]
    """kombu's Redis transport with atomic pops, consumer liveness and shared clients."""

    Channel = _Channel

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        options = getattr(self.client, "transport_options", {})
        interval_s = options.get("unacked_restore_interval", _Channel.unacked_restore_interval)
        poller = _Poller(interval_s if interval_s > 0 else _Channel.unacked_restore_interval)
        self.cycle = poller  # type: ignore[assignment]  # kombu declares it None


def _delivery_tag(message: Any) -> str | None:
    properties = message.get("properties") if isinstance(message, dict) else None
    tag = properties.get("delivery_tag") if isinstance(properties, dict) else None
    return tag if isinstance(tag, str) else None
