"""One typed settings object: every knob of the runner and the workers, and where it comes from.

Values come from ``BLUEPRINT_FAAS_<KNOB>`` environment variables, over an optional TOML or
JSON file named by ``BLUEPRINT_FAAS_CONFIG``, over the defaults below. Unknown keys are
refused in both places (a typo must not silently fall back to a default). Secrets never come
from here except inside broker URLs, and those are redacted in every repr.

The same file may also define the app (its ``[local]`` and ``[faas]`` tables, read by
:mod:`dispatcher.app_config`); those tables are not knobs and are skipped here.

With no broker configured the settings describe the *embedded* mode: kombu's filesystem
transport and Celery's file result backend under ``data_dir``, so a single machine works with
no server installed.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Self
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from dispatcher.errors import ConfigError
from dispatcher.keys import METRICS_PORT_DEFAULT

__all__ = [
    "APP_SECTIONS",
    "CONFIG_ENV_VAR",
    "DEFAULT_DATA_DIR",
    "ENV_PREFIX",
    "Settings",
    "config_file_path",
    "read_config_file",
    "redact_url",
]

#: Prefix of every environment variable the settings read.
ENV_PREFIX = "BLUEPRINT_FAAS_"
#: Names the optional config file; the only prefixed variable that is not a knob.
CONFIG_ENV_VAR = f"{ENV_PREFIX}CONFIG"
#: Tables of the config file that define the app (:mod:`dispatcher.app_config`), not knobs.
APP_SECTIONS = ("local", "faas")
#: Where the embedded mode keeps its queues and results when ``data_dir`` is not set.
DEFAULT_DATA_DIR = Path.home() / ".cache" / "blueprint-faas"

DEFAULT_RETRY_MAX = 5
DEFAULT_RETRY_BASE_S = 0.5
DEFAULT_RETRY_CAP_S = 30.0
DEFAULT_TIME_LIMIT_MARGIN_S = 30.0
DEFAULT_LOCAL_TIME_LIMIT_S = 300.0
DEFAULT_VISIBILITY_TIMEOUT_S = 3600.0
DEFAULT_LIVENESS_TTL_S = 5.0
DEFAULT_RESTORE_INTERVAL_S = 1.0
DEFAULT_RESULT_EXPIRES_S = 86_400.0
DEFAULT_MAX_IN_FLIGHT = 100
DEFAULT_BATCH_MAX_CALLS = 16
DEFAULT_BATCH_MAX_BYTES = 256 * 1024
DEFAULT_SOFT_SHUTDOWN_S = 10.0
DEFAULT_POLL_INTERVAL_S = 0.05
#: Beat warms keep_warm jobs no more often than this by default (providers bill warm starts).
DEFAULT_WARM_INTERVAL_S = 300.0
DEFAULT_WARM_INSTANCES = 1
DEFAULT_HEALTH_INTERVAL_S = 60.0
#: Time limit of a warm or health task: control-plane calls, not jobs.
DEFAULT_CONTROL_TIME_LIMIT_S = 30.0
#: The beat lock expires this long after its holder's last heartbeat (renewed every third).
DEFAULT_BEAT_LOCK_TTL_S = 30.0
DEFAULT_OVERFLOW_BACKLOG_HIGH = 8
DEFAULT_OVERFLOW_BACKLOG_LOW = 2
DEFAULT_OVERFLOW_SAMPLE_S = 0.05
DEFAULT_BREAKER_FAILURES = 5
DEFAULT_BREAKER_FAILURE_RATE = 0.5
DEFAULT_BREAKER_WINDOW_S = 30.0
DEFAULT_BREAKER_MIN_CALLS = 20
DEFAULT_BREAKER_COOLDOWN_S = 30.0
DEFAULT_BREAKER_PROBES = 1
DEFAULT_BUDGET_WAIT_S = 10.0
DEFAULT_BUDGET_REQUEUE_S = 1.0
DEFAULT_BUDGET_LEASE_MARGIN_S = 10.0
DEFAULT_BUDGET_RECOVER_S = 60.0

# Variables under our prefix that belong to another component: the reference server's own
# ``BLUEPRINT_FAAS_SERVER_*`` options are not settings of the runner or the workers.
_FOREIGN_ENV_PREFIXES = (f"{ENV_PREFIX}SERVER_",)
_REDIS_SCHEMES = frozenset({"redis", "rediss", "redis+socket", "unix"})
#: Broker URL schemes that get the transport of :mod:`dispatcher._broker`.
_OWN_TRANSPORT_SCHEMES = frozenset({"redis", "rediss"})
#: TLS options of a ``rediss`` broker (and result backend) whose URL has no ``ssl_*``
#: parameters. kombu turns TLS on for such a URL only when its transport is named by the
#: ``rediss`` alias, and then with certificate checks off; named by our class, it would
#: connect in plain text. So TLS is asked for here, with the server's certificate verified
#: against the system's CAs; the URL's own ``ssl_cert_reqs``/``ssl_ca_certs``/... parameters
#: replace these. (A string, which redis-py accepts: importing ssl here would precede
#: gevent's patching.)
_DEFAULT_TLS = {"ssl_cert_reqs": "required"}
#: kombu's Redis transport made cheaper per call; named, not imported, so that loading the
#: settings does not load kombu and redis before the CLI applies gevent's patches.
_OWN_TRANSPORT = "dispatcher._broker:Transport"


def redact_url(url: str | None) -> str | None:
    """``url`` with any password replaced by ``***`` (for reprs and logs)."""
    if not url:
        return url
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


class Settings(BaseModel):
    """Every knob of a blueprint-faas deployment.

    Build it with :meth:`from_env` (environment and config file), :meth:`from_redis_url`
    (one Redis for broker and results) or the constructor. It is frozen, compares by value
    and its repr never shows a password.

    Raises
    ------
    pydantic.ValidationError
        A value of the wrong type or out of range, or an unknown key, when built directly.
        :meth:`from_env` wraps the same problems in :class:`~dispatcher.errors.ConfigError`.
        Neither message quotes the values given (a broker URL may hold a password).
    """

    # Hidden inputs: an error's text would otherwise quote the values, broker password included.
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    #: Celery broker URL; None selects the embedded filesystem transport.
    broker_url: str | None = None
    #: Celery result backend URL; None means the broker's Redis, or the embedded file backend.
    result_backend: str | None = None
    #: Folder of the embedded mode's queues and results.
    data_dir: Path = DEFAULT_DATA_DIR

    #: Retries after the first attempt for a retryable error (0 disables retries).
    retry_max: int = Field(DEFAULT_RETRY_MAX, ge=0, le=100)
    #: First backoff ceiling; doubled at each retry, with full jitter below it.
    retry_base_s: float = Field(DEFAULT_RETRY_BASE_S, ge=0)
    #: Largest backoff, Retry-After included; must stay well below the visibility timeout.
    retry_cap_s: float = Field(DEFAULT_RETRY_CAP_S, ge=0)

    #: Seconds a task may run past its FaaS function's own timeout before it is killed.
    time_limit_margin_s: float = Field(DEFAULT_TIME_LIMIT_MARGIN_S, gt=0)
    #: Time limit of a local handler (prefork pool only: threads cannot be killed).
    local_time_limit_s: float = Field(DEFAULT_LOCAL_TIME_LIMIT_S, gt=0)
    #: An unacknowledged Redis message is redelivered after this long (worker lost).
    visibility_timeout_s: float = Field(DEFAULT_VISIBILITY_TIMEOUT_S, gt=0)
    #: How long stored results (and so the idempotency record) are kept.
    result_expires_s: float = Field(DEFAULT_RESULT_EXPIRES_S, gt=0)
    #: A worker whose liveness key is this old is presumed dead, and its calls run again.
    liveness_ttl_s: float = Field(DEFAULT_LIVENESS_TTL_S, ge=1)
    #: How often each worker renews its liveness key and looks for dead workers' calls.
    restore_interval_s: float = Field(DEFAULT_RESTORE_INTERVAL_S, gt=0)
    #: Calls the runner keeps published but not yet answered (backpressure).
    max_in_flight: int = Field(DEFAULT_MAX_IN_FLIGHT, ge=1)
    #: Calls of one job the runner may put in one message when several are ready; 1: never.
    batch_max_calls: int = Field(DEFAULT_BATCH_MAX_CALLS, ge=1, le=1000)
    #: Bytes of call wire forms one batch message may hold (a bigger call travels alone).
    batch_max_bytes: int = Field(DEFAULT_BATCH_MAX_BYTES, ge=1)
    #: Seconds a stopping worker keeps finishing its running tasks.
    soft_shutdown_s: float = Field(DEFAULT_SOFT_SHUTDOWN_S, ge=0)
    #: Poll interval of the embedded transport and of non-pub/sub result backends.
    poll_interval_s: float = Field(DEFAULT_POLL_INTERVAL_S, gt=0)
    #: Workers send task events (for Flower).
    send_events: bool = False

    #: Port of a worker's Prometheus exporter; 0 disables it. One worker per port and host.
    metrics_port: int = Field(METRICS_PORT_DEFAULT, ge=0, le=65_535)
    #: Price of a GiB-second on the custom platform (for the cost metric and ledger).
    custom_price_per_gb_second_usd: float = Field(0.0, ge=0)
    #: Price of a million invocations on the custom platform.
    custom_price_per_million_requests_usd: float = Field(0.0, ge=0)

    #: Beat sends a warm task for each ``keep_warm`` FaaS job this often.
    warm_interval_s: float = Field(DEFAULT_WARM_INTERVAL_S, gt=0)
    #: Instances each warm task asks the provider to keep started.
    warm_instances: int = Field(DEFAULT_WARM_INSTANCES, ge=1, le=1000)
    #: Beat sends a health task for each FaaS job this often.
    health_interval_s: float = Field(DEFAULT_HEALTH_INTERVAL_S, gt=0)
    #: Soft time limit of warm and health tasks (the hard limit is 5 s later).
    control_time_limit_s: float = Field(DEFAULT_CONTROL_TIME_LIMIT_S, gt=0)
    #: Seconds the beat lock outlives its holder's last heartbeat: the takeover delay.
    beat_lock_ttl_s: float = Field(DEFAULT_BEAT_LOCK_TTL_S, ge=1)

    #: A ``local_with_faas_overflow`` job's new calls go to FaaS once this many wait locally.
    overflow_backlog_high: int = Field(DEFAULT_OVERFLOW_BACKLOG_HIGH, ge=1)
    #: ... and come back to local once no more than this many wait (hysteresis).
    overflow_backlog_low: int = Field(DEFAULT_OVERFLOW_BACKLOG_LOW, ge=0)
    #: A publisher reads a job's backlog (and a provider's breaker) at most this often.
    overflow_sample_s: float = Field(DEFAULT_OVERFLOW_SAMPLE_S, ge=0)

    #: A provider's breaker opens after this many consecutive transient failures...
    breaker_failures: int = Field(DEFAULT_BREAKER_FAILURES, ge=1)
    #: ... or once this share of a window's calls failed (with ``breaker_min_calls`` calls).
    breaker_failure_rate: float = Field(DEFAULT_BREAKER_FAILURE_RATE, gt=0, le=1)
    breaker_window_s: float = Field(DEFAULT_BREAKER_WINDOW_S, gt=0)
    breaker_min_calls: int = Field(DEFAULT_BREAKER_MIN_CALLS, ge=1)
    #: An open breaker stays open this long, then lets probes through (half-open).
    breaker_cooldown_s: float = Field(DEFAULT_BREAKER_COOLDOWN_S, gt=0)
    #: Probes a half-open breaker lets through at once; this many successes close it.
    breaker_probes: int = Field(DEFAULT_BREAKER_PROBES, ge=1)

    #: A call that finds its provider's concurrency budget spent waits this long for a
    #: lease, then goes back to its queue for ``budget_requeue_s``.
    budget_wait_s: float = Field(DEFAULT_BUDGET_WAIT_S, ge=0)
    budget_requeue_s: float = Field(DEFAULT_BUDGET_REQUEUE_S, ge=0)
    #: A lease outlives its function's timeout by this much, then expires by itself.
    budget_lease_margin_s: float = Field(DEFAULT_BUDGET_LEASE_MARGIN_S, gt=0)
    #: A budget shrunk by throttles is back at its declared size this long after the last.
    budget_recover_s: float = Field(DEFAULT_BUDGET_RECOVER_S, gt=0)

    @model_validator(mode="after")
    def _overflow_has_hysteresis(self) -> Self:
        if self.overflow_backlog_low >= self.overflow_backlog_high:
            raise ValueError("overflow_backlog_low must be below overflow_backlog_high")
        return self

    @model_validator(mode="after")
    def _redelivery_waits_for_the_slowest_task(self) -> Self:
        # FaaS functions' timeouts are checked again by the worker, which knows them.
        self.check_visibility_timeout(self.time_limits_s()[1])
        return self

    def time_limits_s(self, function_timeouts_s: Iterable[float] = ()) -> tuple[float, float]:
        """The (soft, hard) task time limits of a worker.

        The soft limit covers the slowest job: a local handler's ``local_time_limit_s``, or a
        FaaS function's own timeout plus half the margin (the provider gives up first, and
        its answer still has time to come back). The hard limit adds the other half.
        """
        half_margin_s = self.time_limit_margin_s / 2
        soft_s = max([self.local_time_limit_s, *(t + half_margin_s for t in function_timeouts_s)])
        return soft_s, soft_s + half_margin_s

    def check_visibility_timeout(self, hard_time_limit_s: float) -> None:
        """Refuse a visibility timeout that would redeliver a call still running or waiting.

        A Redis message is restored to its queue once unacknowledged for the visibility
        timeout; a task still running, or a retry still waiting for its countdown, would
        then run twice.

        Raises
        ------
        ValueError
            ``visibility_timeout_s`` is not above ``hard_time_limit_s + retry_cap_s``.
        """
        needed_s = hard_time_limit_s + self.retry_cap_s
        if self.visibility_timeout_s <= needed_s:
            raise ValueError(
                f"visibility_timeout_s ({self.visibility_timeout_s}) must be above the hard "
                f"time limit plus retry_cap_s ({needed_s})"
            )

    # -- constructors -------------------------------------------------------------------

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        config_file: Path | None = None,
        **overrides: Any,
    ) -> Self:
        """Read ``BLUEPRINT_FAAS_*`` variables over the optional config file over defaults.

        Parameters
        ----------
        environ:
            The environment to read; ``os.environ`` when None.
        config_file:
            The config file to read instead of the one ``BLUEPRINT_FAAS_CONFIG`` names.
        overrides:
            Knobs set in code, above every other source.

        Raises
        ------
        ConfigError
            An unknown key in the environment or the file, an unreadable file, or a bad value.
        """
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        config_path = config_file or config_file_path(environ)
        if config_path is not None:
            knobs = read_config_file(config_path)
            values.update(
                (name, value) for name, value in knobs.items() if name not in APP_SECTIONS
            )
        values.update(_env_values(environ))
        values.update(overrides)
        unknown = sorted(set(values) - set(cls.model_fields))
        if unknown:
            raise ConfigError(
                f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(cls.model_fields)}"
            )
        try:
            return cls(**values)
        except ValidationError as error:
            raise ConfigError(f"invalid settings: {error}") from error

    @classmethod
    def from_redis_url(cls, url: str, **knobs: Any) -> Self:
        """Broker and result backend on the one Redis at ``url`` (like arq's ``from_dsn``).

        Raises
        ------
        ConfigError
            ``url`` is not a Redis URL.
        """
        if urlsplit(url).scheme not in _REDIS_SCHEMES:
            raise ConfigError(f"not a Redis URL: {redact_url(url)}")
        return cls(broker_url=url, result_backend=url, **knobs)

    @classmethod
    def for_redis(
        cls,
        host: str = "127.0.0.1",
        port: int = 6379,
        db: int = 0,
        *,
        password: str | None = None,
        username: str | None = None,
        tls: bool = False,
        **knobs: Any,
    ) -> Self:
        """Broker and result backend on one Redis given by parts (password URL-quoted)."""
        auth = ""
        if password is not None:
            auth = f"{quote(username or '', safe='')}:{quote(password, safe='')}@"
        scheme = "rediss" if tls else "redis"
        return cls.from_redis_url(f"{scheme}://{auth}{host}:{port}/{db}", **knobs)

    @classmethod
    def embedded(cls, data_dir: Path | str | None = None, **knobs: Any) -> Self:
        """The no-server mode: filesystem queues and file results under ``data_dir``."""
        return cls(data_dir=Path(data_dir) if data_dir else DEFAULT_DATA_DIR, **knobs)

    # -- derived values -----------------------------------------------------------------

    @property
    def is_embedded(self) -> bool:
        """True when no broker is configured and the filesystem transport is used."""
        return self.broker_url is None

    @property
    def resolved_broker_url(self) -> str:
        return "filesystem://" if self.broker_url is None else self.broker_url

    @property
    def resolved_result_backend(self) -> str:
        """The explicit backend, else the broker's Redis, else files under ``data_dir``."""
        if self.result_backend is not None:
            return self.result_backend
        if self.broker_url is not None and urlsplit(self.broker_url).scheme in _REDIS_SCHEMES:
            return self.broker_url
        return f"file://{(self.data_dir / 'results').resolve()}"

    def celery_connection_config(self) -> dict[str, Any]:
        """The Celery settings both the runner and the workers need to talk to each other.

        Only transport, serialisation and reconnection: worker behaviour (acks, prefetch,
        time limits) is the workers' business.
        """
        config: dict[str, Any] = {
            "broker_url": self.resolved_broker_url,
            "result_backend": self.resolved_result_backend,
            "task_serializer": "json",
            "result_serializer": "json",
            "accept_content": ["json"],
            "result_accept_content": ["json"],
            "result_expires": int(self.result_expires_s),
            "result_extended": False,
            "broker_connection_retry_on_startup": True,
            "broker_connection_max_retries": None,
            "broker_channel_error_retry": True,
            "task_publish_retry": True,
            "task_publish_retry_policy": _RECONNECT_POLICY,
            "result_backend_always_retry": True,
            "result_backend_max_sleep_between_retries_ms": 1000,
            "result_backend_max_retries": 600,
            "broker_transport_options": self._transport_options(),
            "result_backend_transport_options": {"retry_policy": _RECONNECT_POLICY},
        }
        broker_scheme = urlsplit(config["broker_url"]).scheme
        if broker_scheme in _OWN_TRANSPORT_SCHEMES:
            config["broker_transport"] = _OWN_TRANSPORT
        if broker_scheme == "rediss":
            config["broker_use_ssl"] = dict(_DEFAULT_TLS)
        if urlsplit(config["result_backend"]).scheme == "rediss":
            # Celery's backend refuses a rediss URL without ssl_cert_reqs; the same default.
            config["redis_backend_use_ssl"] = dict(_DEFAULT_TLS)
        if self.is_embedded:
            self._ensure_embedded_folders()
        return config

    def _transport_options(self) -> dict[str, Any]:
        if self.is_embedded:
            queues = str(self.data_dir / "queues")
            return {
                "data_folder_in": queues,
                "data_folder_out": queues,
                "control_folder": str(self.data_dir / "control"),
                "polling_interval": self.poll_interval_s,
            }
        restore_interval_s = max(1, min(10, int(self.visibility_timeout_s / 3)))
        return {
            "visibility_timeout": self.visibility_timeout_s,
            # kombu sweeps unacked messages every interval * throttle seconds; without this
            # a short visibility timeout would still wait ~100 s for redelivery.
            "unacked_restore_interval": restore_interval_s,
            "unacked_restore_throttle": 1,
            "liveness_ttl_s": self.liveness_ttl_s,
            "restore_interval_s": self.restore_interval_s,
            "socket_keepalive": True,
            "health_check_interval": 10,
            "retry_on_timeout": True,
        }

    def _ensure_embedded_folders(self) -> None:
        for name in ("queues", "control", "results"):
            (self.data_dir / name).mkdir(parents=True, exist_ok=True)

    def to_env(self) -> dict[str, str]:
        """The ``BLUEPRINT_FAAS_*`` variables that rebuild these settings in another process.

        Only knobs that differ from their defaults are written. The values may include a
        broker password: pass them to a child process's environment, never to a log.
        """
        return {
            f"{ENV_PREFIX}{name.upper()}": str(value)
            for name, value in self.model_dump(exclude_defaults=True).items()
            if value is not None
        }

    # -- repr -----------------------------------------------------------------------------

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            if name in ("broker_url", "result_backend"):
                value = redact_url(value)
            yield name, value


_RECONNECT_POLICY: dict[str, Any] = {
    "max_retries": 120,
    "interval_start": 0,
    "interval_step": 0.25,
    "interval_max": 1.0,
}


def _env_values(environ: Mapping[str, str]) -> dict[str, str]:
    return {
        name[len(ENV_PREFIX) :].lower(): value
        for name, value in environ.items()
        if name.startswith(ENV_PREFIX)
        and name != CONFIG_ENV_VAR
        and not name.startswith(_FOREIGN_ENV_PREFIXES)
    }


def config_file_path(environ: Mapping[str, str] | None = None) -> Path | None:
    """The config file ``BLUEPRINT_FAAS_CONFIG`` names in ``environ`` (``os.environ``), if any."""
    value = (os.environ if environ is None else environ).get(CONFIG_ENV_VAR)
    return Path(value) if value else None


def read_config_file(path: Path) -> dict[str, Any]:
    """The table a TOML file (or a JSON one, by its ``.json`` suffix) holds.

    Raises
    ------
    ConfigError
        The file cannot be read, does not parse, or holds something other than a table.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error}") from error
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"config file {path} is not valid: {error}") from error
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a table of settings")
    return data
