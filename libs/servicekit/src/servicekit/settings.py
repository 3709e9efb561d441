"""Settings read from the environment, with the embedded local stack as the default.

Shared connection settings (``POSTGRES_URL``, ``KAFKA_BOOTSTRAP_SERVERS``, ``MQTT_URL``) carry no
prefix so one variable repoints every service; per-service settings use the service's prefix
(``ORDERS_PORT``, ``ORDERS_DATABASE_URL``...).

``COUNTERTOP_ENV`` says where a service runs (``local``, ``test`` or ``production``, the default).
In production a service refuses to start while a setting is unsafe: each service's settings
extend :meth:`PlatformSettings.production_problems` with their own rules, and
:meth:`PlatformSettings.check_production` runs them at start-up.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

LOCAL_POSTGRES_URL = "postgresql://postgres@127.0.0.1:15432/postgres"
LOCAL_KAFKA_BOOTSTRAP_SERVERS = "127.0.0.1:19092"
LOCAL_MQTT_URL = "mqtt://127.0.0.1:11883"
ENVIRONMENT_VARIABLE = "COUNTERTOP_ENV"

Environment = Literal["local", "test", "production"]


class UnsafeSettingsError(RuntimeError):
    """Raised at start-up in production while settings are unsafe; lists every offending one."""

    def __init__(self, service: str, problems: list[str]) -> None:
        self.service = service
        self.problems = problems
        lines = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(
            f"{service} refuses to start with {ENVIRONMENT_VARIABLE}=production:\n{lines}"
        )


class PlatformSettings(BaseSettings):
    """Where the shared infrastructure lives. Unprefixed: one value for every service."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    # Unset means production: a deployment that forgets it gets the strict checks, never the
    # local shortcuts. The local stack and the test fixtures set it explicitly.
    environment: Environment = Field(default="production", validation_alias=ENVIRONMENT_VARIABLE)
    postgres_url: str = Field(default=LOCAL_POSTGRES_URL, validation_alias="POSTGRES_URL")
    kafka_bootstrap_servers: str = Field(
        default=LOCAL_KAFKA_BOOTSTRAP_SERVERS, validation_alias="KAFKA_BOOTSTRAP_SERVERS"
    )
    mqtt_url: str = Field(default=LOCAL_MQTT_URL, validation_alias="MQTT_URL")
    otlp_endpoint: str | None = Field(default=None, validation_alias="OTEL_EXPORTER_OTLP_ENDPOINT")
    log_level: str = Field(default="INFO", validation_alias="LOG_LEVEL")
    log_format: str = Field(default="json", validation_alias="LOG_FORMAT")

    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    def env_name(self, field: str) -> str:
        """The environment variable that sets ``field`` (what an operator has to change)."""
        alias = type(self).model_fields[field].validation_alias
        if isinstance(alias, str):
            return alias
        prefix = str(self.model_config.get("env_prefix") or "")
        return f"{prefix}{field}".upper()

    def production_problems(self) -> list[str]:
        """What makes these settings unsafe in production, one message per setting, each naming
        the variable to change. Subclasses extend the list (``super().production_problems()``)."""
        return []

    def check_production(self) -> None:
        """Refuse to run in production while :meth:`production_problems` finds anything."""
        if not self.is_production:
            return
        problems = self.production_problems()
        if problems:
            raise UnsafeSettingsError(getattr(self, "service_name", "service"), problems)


class ServiceSettings(PlatformSettings):
    """A service's settings. Subclasses set ``service_name`` and ``model_config`` with their
    ``env_prefix`` (e.g. ``ORDERS_``)."""

    service_name: ClassVar[str] = "service"

    host: str = "127.0.0.1"
    port: int = 8100
    # The service's own database URL; when unset, its database on POSTGRES_URL.
    database_url: str | None = None
    # Held open: a request, the relay and each consumer take one at a time, and a service under
    # a store chain's load runs a few dozen requests at once (see docs/benchmarks.md).
    db_pool_size: int = 20
    db_max_overflow: int = 10
    kafka_partitions: int = 3
    # Outbox relay and consumers run inside the service process unless turned off (e.g. to run
    # them as separate deployments).
    run_relay: bool = True
    run_consumers: bool = True
    # A fallback only: the relay wakes on the outbox's NOTIFY. Polling faster costs CPU on
    # every replica while nobody sells.
    outbox_poll_interval: float = 5.0
    outbox_batch_size: int = 500
    # Sent rows are kept this long (and until a log audit found them safe) so that a window
    # the broker lost can be published again; Kafka's own default retention is 7 days.
    outbox_retention_hours: float = 168.0
    # A row that fails on its own this many times (while others go through) is parked.
    outbox_max_attempts: int = 5
    # How often the broker's log is checked against what it acknowledged (0: never).
    outbox_audit_interval: float = 5.0
    # While nothing is sent, the wait between audits doubles up to this.
    outbox_audit_idle_interval: float = 60.0
    # The deadline of every single broker call (fetch, commit, metadata, admin).
    kafka_call_timeout: float = 15.0
    consumer_session_timeout_ms: int = 10_000
    # Kafka's default (a third of the session): each heartbeat is a broker request of every
    # consumer group, idle or not; members still learn of a rebalance within the rebalance
    # timeout.
    consumer_heartbeat_interval_ms: int = 3_000
    consumer_rebalance_timeout_ms: int = 5_000
    # How long the broker may hold a consumer's fetch while records flow, and at most once
    # the consumer has had none for a while (the wait grows with the quiet time in between).
    # Kafka answers a fetch as soon as a record arrives, so a long idle wait costs nothing
    # there; the embedded broker answers within half the wait.
    consumer_fetch_max_wait_ms: int = 50
    consumer_idle_fetch_max_wait_ms: int = 2_000
    consumer_max_attempts: int = 5
    consumer_retry_backoff: float = 0.2
    # A consumer restarts itself after this many failed offset commits in a row...
    consumer_max_commit_failures: int = 3
    # ... or after holding no partition this long (0: never; a group with more members than
    # partitions leaves some idle).
    consumer_assignment_timeout: float = 30.0
    jwks_url: str = "http://127.0.0.1:8101/.well-known/jwks.json"
    jwks_cache_seconds: float = 300.0

    @property
    def database_name(self) -> str:
        return "countertop_" + self.service_name.replace("-", "_")

    @property
    def sqlalchemy_url(self) -> str:
        """The service's own database with the asyncpg driver."""
        url = make_url(self.database_url or self.postgres_url)
        if self.database_url is None:
            url = url.set(database=self.database_name)
        return url.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
