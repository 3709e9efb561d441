"""The local stack, run for real: ``up`` starts the servers before the services, announces them
as they answer, leaves external servers alone, and stops everything on Ctrl-C or SIGTERM."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil
import pytest

from countertop_local.config import SERVICES, LocalStack, find_repo_root
from countertop_local.readiness import server_endpoints
from countertop_local.stack import child_environment
from servicekit.embedded import free_port
from servicekit.embedded.mqtt import EmbeddedMqtt
from servicekit.settings import (
    LOCAL_KAFKA_BOOTSTRAP_SERVERS,
    LOCAL_MQTT_URL,
    LOCAL_POSTGRES_URL,
)

REPO_PROCFILE = find_repo_root(Path(__file__).parent) / "deploy" / "local" / "Procfile"
SERVER_VARIABLES = ("POSTGRES_URL", "KAFKA_BOOTSTRAP_SERVERS", "MQTT_URL")

# Stands in for a service: reports whether the servers answered before it was started and which
# MQTT broker it was given, then serves /readyz.
DUMMY_SERVICE = """
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from countertop_local.readiness import server_endpoints

up = all(endpoint.answers() for endpoint in server_endpoints(os.environ))
print(f"servers answered before start: {up}", flush=True)
print(f"given MQTT_URL={os.environ['MQTT_URL']}", flush=True)

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/readyz" else 404)
        self.end_headers()

    def log_message(self, *args):
        return  # keep the test's output to what the stack prints

ThreadingHTTPServer(("127.0.0.1", int(os.environ["IDENTITY_PORT"])), Handler).serve_forever()
"""


# -- configuration -------------------------------------------------------------------------


def test_local_defaults_are_what_services_default_to(tmp_path: Path) -> None:
    stack = LocalStack(var_dir=tmp_path)
    assert stack.postgres_url == LOCAL_POSTGRES_URL
    assert stack.kafka_bootstrap_servers == LOCAL_KAFKA_BOOTSTRAP_SERVERS
    assert stack.mqtt_url == LOCAL_MQTT_URL
    assert [(s.package, s.default_port) for s in SERVICES] == [
        ("identity", 8101),
        ("orders", 8102),
        ("inventory", 8103),
        ("members", 8104),
        ("payments", 8105),
        ("device_gateway", 8106),
    ]


def test_procfile_runs_the_servers_then_each_service_as_a_module() -> None:
    from honcho.environ import parse_procfile

    processes = parse_procfile(REPO_PROCFILE.read_text()).processes
    assert list(processes)[:3] == ["postgres", "kafka", "mqtt"]
    for server in ("postgres", "kafka", "mqtt"):
        assert processes[server] == f"python -m countertop_local {server}"
    for service in SERVICES:
        assert processes[service.name] == f"python -m {service.package}"


def test_services_get_external_servers_passed_through(tmp_path: Path) -> None:
    env = {
        "PATH": "/usr/bin",
        "KAFKA_BOOTSTRAP_SERVERS": "kafka.internal:9092,kafka2.internal:9092",
        "ORDERS_PORT": "9102",
    }
    stack = LocalStack(var_dir=tmp_path, postgres_port=25432)
    child = child_environment(env, stack)
    assert child["KAFKA_BOOTSTRAP_SERVERS"] == env["KAFKA_BOOTSTRAP_SERVERS"]
    assert child["POSTGRES_URL"] == "postgresql://postgres@127.0.0.1:25432/postgres"
    assert child["MQTT_URL"] == LOCAL_MQTT_URL
    assert child["ORDERS_PORT"] == "9102"
    assert child["IDENTITY_PORT"] == "8101"
    assert child["IDENTITY_SEED_DEMO"] == "true"
    assert child["COUNTERTOP_ENV"] == "local"
    assert child["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)
    endpoints = {e.name: (e.host, e.port) for e in server_endpoints(child)}
    assert endpoints == {
        "postgres": ("127.0.0.1", 25432),
        "kafka": ("kafka.internal", 9092),
        "mqtt": ("127.0.0.1", 11883),
    }


# -- up ------------------------------------------------------------------------------------


class Output:
    """The lines a child prints, collected in the background."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, args=(proc,), daemon=True).start()

    def _pump(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            self._queue.put(raw.decode("utf-8", "replace"))

    def wait_for(self, text: str, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} never printed:\n{self.text}")
            try:
                self.lines.append(self._queue.get(timeout=0.2))
            except queue.Empty:
                continue

    def drain(self) -> None:
        while True:
            try:
                self.lines.append(self._queue.get(timeout=0.5))
            except queue.Empty:
                return

    @property
    def text(self) -> str:
        return "".join(self.lines)


@pytest.fixture
def stack_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SERVER_VARIABLES}
    env.update(
        LocalStack(
            var_dir=tmp_path / "var",
            postgres_port=free_port(),
            kafka_port=free_port(),
            mqtt_port=free_port(),
        ).as_env()
    )
    env["IDENTITY_PORT"] = str(free_port())
    return env


def write_procfile(tmp_path: Path) -> Path:
    script = tmp_path / "dummy_service.py"
    script.write_text(DUMMY_SERVICE)
    servers = [
        line for line in REPO_PROCFILE.read_text().splitlines() if "countertop_local" in line
    ]
    procfile = tmp_path / "Procfile"
    procfile.write_text("\n".join([*servers, f"identity: python {script}", ""]))
    return procfile


def run_up(procfile: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "countertop_local", "up", "--procfile", str(procfile)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def stop_and_check(
    proc: subprocess.Popen[bytes], output: Output, sig: signal.Signals, var_dir: Path
) -> None:
    processes = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    # PostgreSQL runs in its own process group; it must be among what gets stopped.
    assert any(p.name() == "postgres" for p in processes), output.text
    proc.send_signal(sig)
    assert proc.wait(timeout=60) == 128 + sig, output.text
    _, alive = psutil.wait_procs(processes, timeout=5)
    assert alive == [], f"left running: {[(p.pid, p.cmdline()) for p in alive]}"
    left = [
        p.pid for p in psutil.process_iter(["cmdline"]) if str(var_dir) in str(p.info["cmdline"])
    ]
    assert left == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["Ctrl-C", "SIGTERM"])
def test_up_starts_servers_then_services_and_stops_everything(
    sig: signal.Signals, tmp_path: Path, stack_env: dict[str, str]
) -> None:
    proc = run_up(write_procfile(tmp_path), stack_env)
    output = Output(proc)
    try:
        output.wait_for("Countertop is ready")
        text = output.text
        assert f"identity ready at http://127.0.0.1:{stack_env['IDENTITY_PORT']}" in text
        assert "servers answered before start: True" in text
        assert text.index("identity ready at") < text.index("Countertop is ready")
        for server in ("postgres", "kafka", "mqtt"):
            assert f"{server} started" in text
        stop_and_check(proc, output, sig, tmp_path / "var")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output.drain()
    assert "postgres stopped (rc=0)" in output.text
    assert (tmp_path / "var" / "postgres" / "PG_VERSION").is_file()


@pytest.fixture
def external_mqtt() -> Iterator[EmbeddedMqtt]:
    with EmbeddedMqtt(free_port()) as mqtt:
        yield mqtt


def test_up_leaves_out_a_server_the_environment_names(
    tmp_path: Path, stack_env: dict[str, str], external_mqtt: EmbeddedMqtt
) -> None:
    stack_env["MQTT_URL"] = external_mqtt.url
    proc = run_up(write_procfile(tmp_path), stack_env)
    output = Output(proc)
    try:
        output.wait_for("Countertop is ready")
        text = output.text
        assert f"mqtt: using MQTT_URL={external_mqtt.url}, not starting one" in text
        assert "mqtt started" not in text
        assert f"given MQTT_URL={external_mqtt.url}" in text
        stop_and_check(proc, output, signal.SIGTERM, tmp_path / "var")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert external_mqtt.running


# -- wait-ready ----------------------------------------------------------------------------


class FakeServices:
    """Six HTTP servers standing in for the services; each answers /readyz with its status."""

    def __init__(self) -> None:
        self.statuses = {service.name: 200 for service in SERVICES}
        self.ports: dict[str, int] = {}
        self._servers: list[ThreadingHTTPServer] = []
        statuses = self.statuses
        for service in SERVICES:

            class Handler(BaseHTTPRequestHandler):
                name = service.name

                def do_GET(self) -> None:
                    self.send_response(statuses[self.name] if self.path == "/readyz" else 404)
                    self.end_headers()

                def log_message(self, format: str, *args: object) -> None:
                    return

            server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            self._servers.append(server)
            self.ports[service.env_prefix + "_PORT"] = server.server_address[1]

    def close(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()

    def wait_ready(self, timeout: float) -> subprocess.CompletedProcess[str]:
        env = os.environ | {name: str(port) for name, port in self.ports.items()}
        return subprocess.run(
            [sys.executable, "-m", "countertop_local", "wait-ready", "--timeout", str(timeout)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )


@pytest.fixture
def fake_services() -> Iterator[FakeServices]:
    services = FakeServices()
    yield services
    services.close()


def test_wait_ready_succeeds_once_every_service_answers(fake_services: FakeServices) -> None:
    result = fake_services.wait_ready(timeout=10)
    assert result.returncode == 0, result.stderr
    for service in SERVICES:
        port = fake_services.ports[service.env_prefix + "_PORT"]
        assert f"{service.name} ready at http://127.0.0.1:{port}" in result.stdout
    assert result.stdout.rstrip().endswith("Countertop is ready")


def test_wait_ready_fails_naming_the_service_not_ready(fake_services: FakeServices) -> None:
    fake_services.statuses["orders"] = 503
    result = fake_services.wait_ready(timeout=1)
    assert result.returncode == 1
    assert "not ready after 1s: orders" in result.stderr
    assert "Countertop is ready" not in result.stdout
