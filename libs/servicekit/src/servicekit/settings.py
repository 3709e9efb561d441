"""Settings read from the environment, with the embedded local stack as the default.

Shared connection settings (``POSTGRES_URL``, ``KAFKA_BOOTSTRAP_SERVERS``, ``MQTT_URL``) carry no
prefix so one variable repoints every service; per-service settings use the service's prefix
(``ORDERS_PORT``, ``ORDERS_DATABASE_URL``...).
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

LOCAL_POSTGRES_URL = "postgresql://postgres@127.0.0.1:15432/postgres"
LOCAL_KAFKA_BOOTSTRAP_SERVERS = "127.0.0.1:19092"
LOCAL_MQTT_URL = "mqtt://127.0.0.1:11883"


class PlatformSettings(BaseSettings):
    """Where the shared infrastructure lives. Unprefixed: one value for every service."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    postgres_url: str = Field(default=LOCAL_POSTGRES_URL, validation_alias="POSTGRES_URL")
    kafka_bootstrap_servers: str = Field(
        default=LOCAL_KAFKA_BOOTSTRAP_SERVERS, validation_alias="KAFKA_BOOTSTRAP_SERVERS"
    )
    mqtt_url: str = Field(default=LOCAL_MQTT_URL, validation_alias="MQTT_URL")
    otlp_endpoint: str | None = Field(default=None, validation_alias="OTEL_EXPORTER_OTLP_ENDPOINT")
    log_level: str = Field(default="INFO", validation_alias="LOG_LEVEL")
    log_format: str = Field(default="json", validation_alias="LOG_FORMAT")


class ServiceSettings(PlatformSettings):
    """A service's settings. Subclasses set ``service_name`` and ``model_config`` with their
    ``env_prefix`` (e.g. ``ORDERS_``)."""

    service_name: ClassVar[str] = "service"

    host: str = "127.0.0.1"
    port: int = 8100
    # The service's own database URL; when unset, its database on POSTGRES_URL.
    database_url: str | None = None
    db_pool_size: int = 10
    kafka_partitions: int = 3
    # Outbox relay and consumers run inside the service process unless turned off (e.g. to run
    # them as separate deployments).
    run_relay: bool = True
    run_consumers: bool = True
    outbox_poll_interval: float = 1.0
    outbox_batch_size: int = 500
    # Sent rows are kept this long (and until a log audit found them safe) so that a window
    # the broker lost can be published again; Kafka's own default retention is 7 days.
    outbox_retention_hours: float = 168.0
    # A row that fails on its own this many times (while others go through) is parked.
    outbox_max_attempts: int = 5
    # How often the broker's log is checked against what it acknowledged (0: never).
    outbox_audit_interval: float = 5.0
    # The deadline of every single broker call (fetch, commit, metadata, admin).
    kafka_call_timeout: float = 15.0
    consumer_session_timeout_ms: int = 10_000
    consumer_heartbeat_interval_ms: int = 1_000
    consumer_rebalance_timeout_ms: int = 5_000
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
