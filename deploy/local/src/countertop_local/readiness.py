"""Waiting for the stack: servers accepting TCP connections, services answering ``/readyz``."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from countertop_local.config import SERVER_URL_ENV, LocalStack, Service
from servicekit.embedded.ports import port_is_open

Report = Callable[[str], None]


# MQTT 3.1.1 CONNECT (clean session, keep-alive 60 s, client id "countertop-probe") and
# DISCONNECT. A bare TCP connect would make the broker log an error for every probe.
_MQTT_CLIENT_ID = b"countertop-probe"
_MQTT_CONNECT = (
    bytes([0x10, 12 + len(_MQTT_CLIENT_ID)])
    + b"\x00\x04MQTT\x04\x02\x00\x3c"
    + len(_MQTT_CLIENT_ID).to_bytes(2, "big")
    + _MQTT_CLIENT_ID
)
_MQTT_DISCONNECT = b"\xe0\x00"


def mqtt_answers(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether an MQTT broker on ``host:port`` answers a CONNECT (refusals count: it is up)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(_MQTT_CONNECT)
            answer = sock.recv(4)
            if answer[:1] == b"\x20":
                sock.sendall(_MQTT_DISCONNECT)
                return True
            return False
    except OSError:
        return False


@dataclass(frozen=True)
class Endpoint:
    """A server as a TCP address."""

    name: str
    host: str
    port: int
    mqtt: bool = False

    def answers(self) -> bool:
        if self.mqtt:
            return mqtt_answers(self.host, self.port)
        return port_is_open(self.host, self.port, timeout=0.5)

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def _from_url(name: str, url: str, default_port: int, *, mqtt: bool = False) -> Endpoint | None:
    try:
        parts = urlsplit(url)
        port = parts.port or default_port
    except ValueError:
        return None
    return Endpoint(name, parts.hostname, port, mqtt) if parts.hostname else None


def _from_bootstrap(name: str, servers: str) -> Endpoint | None:
    first = servers.split(",")[0].strip()
    if "://" in first:
        first = first.split("://", 1)[1]
    host, _, port = first.rpartition(":")
    if not host or not port.isdigit():
        return None
    return Endpoint(name, host.strip("[]"), int(port))


def server_endpoints(env: Mapping[str, str], names: Sequence[str] | None = None) -> list[Endpoint]:
    """Where the servers are: the external ones named in ``env``, else the local stack's.
    Unparseable settings are skipped (the services will report them)."""
    urls = LocalStack.from_env(env).server_urls()
    urls.update({var: env[var] for var in SERVER_URL_ENV.values() if env.get(var)})
    mqtt_url = urls["MQTT_URL"]
    # Over TLS or websockets a raw CONNECT gets no answer: a TCP connect has to do.
    plain = mqtt_url.split(":", 1)[0] in ("mqtt", "tcp")
    parsed = {
        "postgres": _from_url("postgres", urls["POSTGRES_URL"], 5432),
        "kafka": _from_bootstrap("kafka", urls["KAFKA_BOOTSTRAP_SERVERS"]),
        "mqtt": _from_url("mqtt", mqtt_url, 1883 if plain else 8883, mqtt=plain),
    }
    wanted = list(parsed) if names is None else list(names)
    return [endpoint for name in wanted if (endpoint := parsed.get(name)) is not None]


def _deadline_passed(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


def wait_for_servers(
    endpoints: Sequence[Endpoint],
    *,
    timeout: float | None,
    report: Report,
    stop: threading.Event | None = None,
    interval: float = 0.2,
) -> list[Endpoint]:
    """Wait until every endpoint accepts connections; returns those that did not in time."""
    pending = list(endpoints)
    deadline = None if timeout is None else time.monotonic() + timeout
    announced = False
    while pending:
        pending = [e for e in pending if not e.answers()]
        if not pending or _deadline_passed(deadline) or (stop is not None and stop.is_set()):
            break
        if not announced:
            report("waiting for " + ", ".join(f"{e.name} at {e}" for e in pending))
            announced = True
        if stop is not None:
            stop.wait(interval)
        else:
            time.sleep(interval)
    return pending


def answers_ready(client: httpx.Client, url: str) -> bool:
    try:
        return client.get(url).status_code == 200
    except httpx.HTTPError:
        return False


def wait_for_services(
    services: Sequence[Service],
    env: Mapping[str, str],
    *,
    timeout: float | None,
    report: Report,
    stop: threading.Event | None = None,
    interval: float = 0.5,
) -> list[Service]:
    """Poll each service's ``/readyz`` until it answers 200, reporting "<name> ready at <url>"
    as each does; returns the services still not ready when ``timeout`` passed or ``stop`` was
    set."""
    pending = list(services)
    deadline = None if timeout is None else time.monotonic() + timeout
    # trust_env=False: a proxy configured for the outside world must not see local requests.
    with httpx.Client(timeout=2.0, trust_env=False) as client:
        while pending:
            for service in list(pending):
                if answers_ready(client, service.readyz_url(env)):
                    report(f"{service.name} ready at {service.base_url(env)}")
                    pending.remove(service)
            if not pending or _deadline_passed(deadline):
                break
            if stop is not None and stop.wait(interval):
                break
            if stop is None:
                time.sleep(interval)
    return pending
