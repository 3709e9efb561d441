"""The embedded servers, started for real: they serve clients, keep what they should, and leave
no process behind."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import psutil
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from amqtt.client import MQTTClient

from servicekit.embedded import EmbeddedServerError, free_port, port_is_open
from servicekit.embedded.kafka import EmbeddedKafka
from servicekit.embedded.mqtt import EmbeddedMqtt
from servicekit.embedded.postgres import EmbeddedPostgres


def tree(pid: int) -> list[psutil.Process]:
    process = psutil.Process(pid)
    return [process, *process.children(recursive=True)]


def assert_gone(processes: list[psutil.Process]) -> None:
    _, alive = psutil.wait_procs(processes, timeout=5)
    assert alive == [], f"still running: {[p.pid for p in alive]}"


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port some other program already listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


# -- PostgreSQL ----------------------------------------------------------------------------


async def test_postgres_serves_keeps_data_and_stops_cleanly(tmp_path: Path) -> None:
    pg = EmbeddedPostgres(tmp_path / "data", free_port(), fsync=False)
    assert pg.url == f"postgresql://postgres@127.0.0.1:{pg.port}/postgres"
    pg.start()
    assert pg.pid is not None
    processes = tree(pg.pid)
    conn = await asyncpg.connect(pg.url)
    try:
        await conn.execute("CREATE TABLE kept (amount bigint NOT NULL)")
        await conn.execute("INSERT INTO kept VALUES (1250)")
        assert await conn.fetchval("SHOW max_connections") == "200"
        assert await conn.fetchval("SHOW server_encoding") == "UTF8"
    finally:
        await conn.close()
    pg.stop()
    assert not pg.running
    assert_gone(processes)
    assert not port_is_open("127.0.0.1", pg.port)

    # Same cluster, another port: the data is still there.
    with EmbeddedPostgres(tmp_path / "data", free_port(), fsync=False) as again:
        assert again.pid is not None
        processes = tree(again.pid)
        conn = await asyncpg.connect(again.url)
        try:
            assert await conn.fetchval("SELECT amount FROM kept") == 1250
        finally:
            await conn.close()
    assert_gone(processes)


async def test_postgres_fsync_is_on_unless_turned_off(tmp_path: Path) -> None:
    with EmbeddedPostgres(tmp_path / "data", free_port()) as pg:
        conn = await asyncpg.connect(pg.url)
        try:
            assert await conn.fetchval("SHOW fsync") == "on"
        finally:
            await conn.close()
    with EmbeddedPostgres(tmp_path / "data", free_port(), fsync=False) as pg:
        conn = await asyncpg.connect(pg.url)
        try:
            assert await conn.fetchval("SHOW fsync") == "off"
        finally:
            await conn.close()


async def test_postgres_recovers_from_a_killed_run(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    # Durable settings: with fsync off, commits are asynchronous and a kill may lose them.
    pg = EmbeddedPostgres(data_dir, free_port())
    pg.start()
    assert pg.pid is not None
    conn = await asyncpg.connect(pg.url)
    await conn.execute("CREATE TABLE survived (id int)")
    await conn.close()
    processes = tree(pg.pid)
    os.kill(pg.pid, signal.SIGKILL)
    assert (data_dir / "postmaster.pid").exists()

    with EmbeddedPostgres(data_dir, free_port()) as recovered:
        conn = await asyncpg.connect(recovered.url)
        try:
            assert await conn.fetchval("SELECT count(*) FROM survived") == 0
        finally:
            await conn.close()
    assert_gone(processes)
    pg.stop()


@pytest.fixture
def unrelated_pid() -> Iterator[int]:
    """The pid of a running process that has nothing to do with PostgreSQL."""
    proc = subprocess.Popen(["sleep", "60"])
    yield proc.pid
    proc.kill()
    proc.wait()


async def test_postgres_ignores_a_pid_file_naming_an_unrelated_process(
    tmp_path: Path, unrelated_pid: int
) -> None:
    data_dir = tmp_path / "data"
    EmbeddedPostgres(data_dir, free_port(), fsync=False).initdb()
    # After a killed run the recorded pid may belong to another program by now; PostgreSQL
    # alone would refuse to start ("lock file already exists").
    (data_dir / "postmaster.pid").write_text(
        f"{unrelated_pid}\n{data_dir}\n1700000000\n5432\n\n127.0.0.1\n  0  0\nready\n"
    )
    with EmbeddedPostgres(data_dir, free_port(), fsync=False) as pg:
        conn = await asyncpg.connect(pg.url)
        try:
            assert await conn.fetchval("SELECT 1") == 1
        finally:
            await conn.close()
    assert psutil.pid_exists(unrelated_pid)


def test_postgres_refuses_a_cluster_another_server_runs(tmp_path: Path) -> None:
    with EmbeddedPostgres(tmp_path / "data", free_port(), fsync=False) as pg:
        with pytest.raises(EmbeddedServerError, match="already runs"):
            EmbeddedPostgres(tmp_path / "data", free_port(), fsync=False).start()
        assert pg.running


def test_postgres_reports_why_it_could_not_start(tmp_path: Path, busy_port: int) -> None:
    pg = EmbeddedPostgres(tmp_path / "data", busy_port, fsync=False)
    with pytest.raises(EmbeddedServerError, match="could not bind"):
        pg.start()
    assert not pg.running


def test_postgres_leaves_foreign_directories_alone(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "notes.txt").write_text("mine")
    with pytest.raises(EmbeddedServerError, match="not empty"):
        EmbeddedPostgres(tmp_path / "data", free_port()).initdb()
    assert (tmp_path / "data" / "notes.txt").read_text() == "mine"


# -- Kafka ---------------------------------------------------------------------------------


async def test_kafka_produces_and_consumes_and_stops_cleanly() -> None:
    kafka = EmbeddedKafka(free_port())
    kafka.start()
    assert kafka.pid is not None
    processes = tree(kafka.pid)
    try:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
        await admin.start()
        try:
            await admin.create_topics([NewTopic("orders.order", 1, 1)])
        finally:
            await admin.close()
        producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers)
        await producer.start()
        try:
            await producer.send_and_wait("orders.order", b'{"amount": 1250}', key=b"o-1")
        finally:
            await producer.stop()
        # A short session timeout: Tansu completes a group join after about half of it.
        consumer = AIOKafkaConsumer(
            "orders.order",
            bootstrap_servers=kafka.bootstrap_servers,
            group_id="inventory",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            session_timeout_ms=2000,
            heartbeat_interval_ms=500,
        )
        await consumer.start()
        try:
            message = await consumer.getone()
            await consumer.commit()
            assert (message.key, message.value) == (b"o-1", b'{"amount": 1250}')
        finally:
            await consumer.stop()
    finally:
        kafka.stop()
    assert not kafka.running
    assert_gone(processes)
    assert not port_is_open("127.0.0.1", kafka.port)


def test_kafka_reports_a_busy_port(busy_port: int) -> None:
    # The busy port accepts connections: a connect test alone would call the broker ready.
    kafka = EmbeddedKafka(busy_port, startup_timeout=5)
    with pytest.raises(EmbeddedServerError, match="exited"):
        kafka.start()
    assert not kafka.running


# -- MQTT ----------------------------------------------------------------------------------


async def test_mqtt_publishes_and_subscribes_and_stops_cleanly() -> None:
    mqtt = EmbeddedMqtt(free_port())
    assert mqtt.url == f"mqtt://127.0.0.1:{mqtt.port}"
    with mqtt:
        subscriber, publisher = MQTTClient(), MQTTClient()
        await subscriber.connect(mqtt.url)
        await subscriber.subscribe([("devices/sn-1/print", 1)])
        await publisher.connect(mqtt.url)
        await publisher.publish("devices/sn-1/print", b"receipt", qos=1)
        message = await subscriber.deliver_message(timeout_duration=5)
        await publisher.disconnect()
        await subscriber.disconnect()
        assert message is not None
        assert (message.topic, bytes(message.data)) == ("devices/sn-1/print", b"receipt")
    assert not mqtt.running
    assert not port_is_open("127.0.0.1", mqtt.port)


def test_mqtt_reports_a_busy_port(busy_port: int) -> None:
    mqtt = EmbeddedMqtt(busy_port)
    with pytest.raises(EmbeddedServerError, match="could not start"):
        mqtt.start()
    assert not mqtt.running


# -- foreground ----------------------------------------------------------------------------


def read_lines(stream: object) -> queue.Queue[str]:
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for raw in iter(stream.readline, b""):  # type: ignore[attr-defined]
            lines.put(raw.decode("utf-8", "replace"))

    threading.Thread(target=pump, daemon=True).start()
    return lines


def wait_for_line(lines: queue.Queue[str], text: str, timeout: float = 30.0) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.1)
        except queue.Empty:
            continue
        seen.append(line)
        if text in line:
            return seen
    raise AssertionError(f"{text!r} not printed; got:\n{''.join(seen)}")


FOREGROUND = {
    "postgres": (
        "from pathlib import Path; from servicekit.embedded.postgres import EmbeddedPostgres;"
        "raise SystemExit(EmbeddedPostgres(Path({dir!r}) / 'data', {port}).run_foreground())",
        "PostgreSQL ready at",
    ),
    "kafka": (
        "from servicekit.embedded.kafka import EmbeddedKafka;"
        "raise SystemExit(EmbeddedKafka({port}).run_foreground())",
        "Kafka broker ready at",
    ),
    "mqtt": (
        "from servicekit.embedded.mqtt import EmbeddedMqtt;"
        "raise SystemExit(EmbeddedMqtt({port}).run_foreground())",
        "MQTT broker ready at",
    ),
}


@pytest.mark.parametrize("server", sorted(FOREGROUND))
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_foreground_server_stops_cleanly_on_signal(
    server: str, stop_signal: signal.Signals, tmp_path: Path
) -> None:
    code, ready_line = FOREGROUND[server]
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", code.format(dir=str(tmp_path), port=port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_line(read_lines(proc.stdout), ready_line)
        assert port_is_open("127.0.0.1", port)
        processes = tree(proc.pid)
        proc.send_signal(stop_signal)
        assert proc.wait(timeout=30) == 0
        assert_gone(processes)
        assert not port_is_open("127.0.0.1", port)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_foreground_server_stops_when_its_supervisor_is_killed(tmp_path: Path) -> None:
    code, ready_line = FOREGROUND["postgres"]
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", code.format(dir=str(tmp_path), port=port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_line(read_lines(proc.stdout), ready_line)
        processes = tree(proc.pid)
        proc.kill()
        proc.wait()
        assert_gone(processes)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("server", sorted(FOREGROUND))
def test_foreground_server_fails_on_a_busy_port(
    server: str, busy_port: int, tmp_path: Path
) -> None:
    code, ready_line = FOREGROUND[server]
    result = subprocess.run(
        [sys.executable, "-c", code.format(dir=str(tmp_path), port=busy_port)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert ready_line not in result.stdout
