"""The servers a test run talks to.

``POSTGRES_URL``, ``KAFKA_BOOTSTRAP_SERVERS`` and ``MQTT_URL`` name external servers; for each
one not set, an embedded server is started for the run (in a temporary directory, on a free
port) and stopped at the end.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import make_url


@dataclass
class Servers:
    postgres_url: str
    kafka_bootstrap_servers: str
    mqtt_url: str
    embedded: list[str] = field(default_factory=list)

    def database_url(self, name: str) -> str:
        """The asyncpg URL of database ``name`` on the test PostgreSQL server."""
        return (
            make_url(self.postgres_url)
            .set(drivername="postgresql+asyncpg", database=name)
            .render_as_string(hide_password=False)
        )

    def new_database_name(self, prefix: str = "test") -> str:
        return f"ct_{prefix}_{secrets.token_hex(4)}"


@contextlib.contextmanager
def run_servers(*, need_mqtt: bool = False) -> Iterator[Servers]:
    with contextlib.ExitStack() as stack:
        embedded: list[str] = []
        postgres_url = os.environ.get("POSTGRES_URL")
        if not postgres_url:
            from servicekit.embedded.ports import free_port
            from servicekit.embedded.postgres import EmbeddedPostgres

            data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ct-pg-")))
            pg = EmbeddedPostgres(data_dir / "data", port=free_port(), fsync=False)
            stack.enter_context(pg)
            postgres_url = pg.url
            embedded.append("postgres")
        kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        if not kafka:
            from servicekit.embedded.kafka import EmbeddedKafka
            from servicekit.embedded.ports import free_port

            broker = EmbeddedKafka(port=free_port())
            stack.enter_context(broker)
            kafka = broker.bootstrap_servers
            embedded.append("kafka")
        mqtt_url = os.environ.get("MQTT_URL", "")
        if not mqtt_url and need_mqtt:
            from servicekit.embedded.mqtt import EmbeddedMqtt
            from servicekit.embedded.ports import free_port

            mqtt = EmbeddedMqtt(port=free_port())
            stack.enter_context(mqtt)
            mqtt_url = mqtt.url
            embedded.append("mqtt")
        yield Servers(postgres_url, kafka, mqtt_url, embedded)
