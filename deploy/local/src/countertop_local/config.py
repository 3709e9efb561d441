"""What the local stack runs and where: the six services and their ports, the three servers,
their ports and the ``var/`` directory, each overridable from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

VAR_DIR_ENV = "COUNTERTOP_VAR_DIR"
POSTGRES_PORT_ENV = "COUNTERTOP_POSTGRES_PORT"
KAFKA_PORT_ENV = "COUNTERTOP_KAFKA_PORT"
MQTT_PORT_ENV = "COUNTERTOP_MQTT_PORT"

DEFAULT_POSTGRES_PORT = 15432
DEFAULT_KAFKA_PORT = 19092
DEFAULT_MQTT_PORT = 11883


@dataclass(frozen=True)
class Service:
    """A service as the local stack runs it: ``python -m <package>`` serving on its port."""

    name: str
    package: str
    env_prefix: str
    default_port: int

    def port(self, env: Mapping[str, str]) -> int:
        return int(env.get(f"{self.env_prefix}_PORT") or self.default_port)

    def base_url(self, env: Mapping[str, str]) -> str:
        host = env.get(f"{self.env_prefix}_HOST") or "127.0.0.1"
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port(env)}"

    def readyz_url(self, env: Mapping[str, str]) -> str:
        return self.base_url(env) + "/readyz"


SERVICES: tuple[Service, ...] = (
    Service("identity", "identity", "IDENTITY", 8101),
    Service("orders", "orders", "ORDERS", 8102),
    Service("inventory", "inventory", "INVENTORY", 8103),
    Service("members", "members", "MEMBERS", 8104),
    Service("payments", "payments", "PAYMENTS", 8105),
    Service("device-gateway", "device_gateway", "DEVICE_GATEWAY", 8106),
)
SERVICES_BY_NAME = {service.name: service for service in SERVICES}

# Procfile name of each embedded server -> the variable that points services at an external one.
SERVER_URL_ENV = {
    "postgres": "POSTGRES_URL",
    "kafka": "KAFKA_BOOTSTRAP_SERVERS",
    "mqtt": "MQTT_URL",
}


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    value = env.get(name)
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise SystemExit(f"{name} must be a port number, not {value!r}") from None


def find_repo_root(start: Path | None = None) -> Path:
    """The repository holding ``deploy/local/Procfile``: searched upwards from ``start`` (the
    working directory), then from this package's location; ``start`` if neither finds it."""
    origin = (start or Path.cwd()).absolute()
    here = Path(__file__).resolve()
    for candidate in (origin, *origin.parents, *here.parents):
        if (candidate / "deploy" / "local" / "Procfile").is_file():
            return candidate
    return origin


@dataclass(frozen=True)
class LocalStack:
    """Where the embedded servers of the local stack keep data and listen."""

    var_dir: Path
    postgres_port: int = DEFAULT_POSTGRES_PORT
    kafka_port: int = DEFAULT_KAFKA_PORT
    mqtt_port: int = DEFAULT_MQTT_PORT
    host: str = "127.0.0.1"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> LocalStack:
        env = os.environ if env is None else env
        var_dir = env.get(VAR_DIR_ENV)
        return cls(
            var_dir=Path(var_dir).absolute() if var_dir else find_repo_root() / "var",
            postgres_port=_port(env, POSTGRES_PORT_ENV, DEFAULT_POSTGRES_PORT),
            kafka_port=_port(env, KAFKA_PORT_ENV, DEFAULT_KAFKA_PORT),
            mqtt_port=_port(env, MQTT_PORT_ENV, DEFAULT_MQTT_PORT),
        )

    @property
    def postgres_data_dir(self) -> Path:
        return self.var_dir / "postgres"

    @property
    def postgres_url(self) -> str:
        return f"postgresql://postgres@{self.host}:{self.postgres_port}/postgres"

    @property
    def kafka_bootstrap_servers(self) -> str:
        return f"{self.host}:{self.kafka_port}"

    @property
    def mqtt_url(self) -> str:
        return f"mqtt://{self.host}:{self.mqtt_port}"

    def server_urls(self) -> dict[str, str]:
        """The connection variables services get when the local servers are used."""
        return {
            "POSTGRES_URL": self.postgres_url,
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap_servers,
            "MQTT_URL": self.mqtt_url,
        }

    def as_env(self) -> dict[str, str]:
        """This configuration as the variables ``from_env`` reads, for child processes."""
        return {
            VAR_DIR_ENV: str(self.var_dir),
            POSTGRES_PORT_ENV: str(self.postgres_port),
            KAFKA_PORT_ENV: str(self.kafka_port),
            MQTT_PORT_ENV: str(self.mqtt_port),
        }
