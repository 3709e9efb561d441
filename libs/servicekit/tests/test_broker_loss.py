"""A broker that loses what it acknowledged: every event an outbox marked sent still reaches
every consumer group, once in effect, without anyone stepping in; and consumers do not wedge
when the broker comes back empty. Real PostgreSQL, a Tansu broker of the test's own that is
killed with SIGKILL and started again on the same port (its log is in memory: it comes back
empty)."""

from __future__ import annotations

import os
import secrets
import signal
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from servicekit.audit import LogAuditor
from servicekit.bus.base import LogBounds, OutgoingMessage, TopicPartition
from servicekit.bus.kafka import KafkaConsumerTransport, KafkaLogInspector, KafkaPublisher
from servicekit.bus.memory import InMemoryBroker, InMemoryPublisher
from servicekit.embedded.kafka import EmbeddedKafka
from servicekit.embedded.ports import free_port
from servicekit.relay import OutboxRelay
from servicekit.testing.wait import eventually

FAST_GROUP = {
    "session_timeout_ms": 2000,
    "heartbeat_interval_ms": 500,
    "rebalance_timeout_ms": 1000,
}


class Broker:
    """A Tansu broker that can be killed and started again on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.server = EmbeddedKafka(port=self.port)

    @property
    def bootstrap(self) -> str:
        return self.server.bootstrap_servers

    def start(self) -> None:
        self.server = EmbeddedKafka(port=self.port)
        self.server.start()

    def kill(self) -> None:
        pid = self.server.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        self.server.stop()  # reaps the process


@pytest.fixture
def broker() -> Iterator[Broker]:
    b = Broker()
    b.start()
    yield b
    b.server.stop()


class Delivery:
    """The producing side (relay and log auditor) and one consuming group, on ``broker``."""

    def __init__(self, pair, broker: Broker) -> None:
        self.pair = pair
        self.publisher = KafkaPublisher(broker.bootstrap, publish_timeout=3, partitions=3)
        self.auditor = LogAuditor(
            pair.producer,
            KafkaLogInspector(broker.bootstrap, call_timeout=3),
            service="producer",
            partitions=3,
            interval=0.5,
        )
        self.relay: OutboxRelay = pair.relay(
            self.publisher,
            max_backoff=0.5,
            poll_interval=0.2,
            audited_before=self.auditor.audited_before,
            on_recovered=self.auditor.wake,
        )
        self.auditor.on_rearmed = self.relay.wake
        self.consumer = pair.consumer_for(
            KafkaConsumerTransport(
                broker.bootstrap,
                group_id=f"g-{secrets.token_hex(4)}",
                topics=[pair.topic],
                partitions=3,
                call_timeout=3,
                **FAST_GROUP,
            ),
            self.publisher,
            group="g",
        )
        self.consumer.max_restart_backoff = 0.5

    async def stop(self) -> None:
        await self.consumer.stop()
        await self.relay.stop()
        await self.auditor.stop()
        await self.publisher.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def delivery(pair, broker) -> AsyncIterator[Delivery]:
    d = Delivery(pair, broker)
    yield d
    await d.stop()


async def applied_ids(pair) -> set[object]:
    return {r[0] for r in await pair.applied()}


async def test_events_sent_before_the_broker_lost_its_log_are_published_again(
    pair, broker, delivery
) -> None:
    # Applied by the consumer before the crash: published again, skipped by its inbox.
    early = [await pair.write(f"stock-{n % 4}", n) for n in range(12)]
    await delivery.relay.start()
    await delivery.consumer.start()
    await eventually(lambda: _has(pair, 12), timeout=30)
    await delivery.consumer.stop()

    # Marked sent, never read by the consumer: the crash takes them with it.
    late = [await pair.write(f"stock-{n % 4}", n) for n in range(12, 30)]
    await eventually(lambda: _unsent_is(pair, 0), timeout=30)

    broker.kill()
    broker.start()  # same port, empty log, no topics, no groups
    # New events right away: they land on offsets the lost ones had.
    after = [await pair.write(f"stock-{n % 4}", n) for n in range(30, 40)]
    await delivery.auditor.start()
    await delivery.consumer.start()

    everything = {e.event_id for e in early + late + after}
    await eventually(lambda: _applied_all(pair, everything), timeout=60)
    applied = await pair.applied()
    assert len(applied) == 40, "an event was applied twice"
    assert await pair.unsent() == 0

    # Every row is recorded where the new log holds it.
    async with pair.producer.transaction() as session:
        rows = (
            await session.execute(
                sa.text("SELECT id, kafka_partition, kafka_offset FROM outbox WHERE topic = :t"),
                {"t": pair.topic},
            )
        ).all()
    inspector = KafkaLogInspector(broker.bootstrap, call_timeout=5)
    try:
        assert (await inspector.partition_counts([pair.topic])) == {pair.topic: 3}
        held: dict[tuple[int, int], str] = {}
        for p in range(3):
            for offset, event_id in (
                await inspector.event_ids(TopicPartition(pair.topic, p), 0, 1000)
            ).items():
                held[(p, offset)] = event_id
    finally:
        await inspector.close()
    for row_id, partition, offset in rows:
        assert held.get((partition, offset)) == str(row_id)


async def test_a_deleted_topic_is_created_again_with_its_partitions_and_refilled(
    pair, broker, delivery
) -> None:
    events = [await pair.write(f"stock-{n % 5}", n) for n in range(15)]
    await delivery.relay.start()
    await eventually(lambda: _unsent_is(pair, 0), timeout=30)
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([pair.topic])
    finally:
        await admin.close()

    await delivery.auditor.start()
    await delivery.consumer.start()
    await eventually(lambda: _applied_all(pair, {e.event_id for e in events}), timeout=60)
    assert len(await pair.applied()) == 15
    inspector = KafkaLogInspector(broker.bootstrap, call_timeout=5)
    try:
        assert (await inspector.partition_counts([pair.topic])) == {pair.topic: 3}
    finally:
        await inspector.close()


async def test_an_intact_log_is_audited_clean_and_gates_pruning(pair, delivery) -> None:
    for n in range(10):
        await pair.write(f"stock-{n % 3}", n)
    assert await delivery.relay.relay_once() == 10
    delivery.relay.retention_seconds = 0
    # No clean audit yet: nothing sent may be pruned, the broker may have lost it.
    assert await delivery.relay.prune() == 0

    report = await delivery.auditor.audit_once()
    assert report.clean, report.reasons
    assert await delivery.auditor.audit_once()  # and again, with nothing read twice
    assert await delivery.relay.prune() == 10


async def test_consumer_whose_group_offsets_lie_beyond_the_new_log_reads_it_from_the_start(
    pair, broker, delivery
) -> None:
    await delivery.relay.start()
    await delivery.consumer.start()
    first = [await pair.write("stock-1", n) for n in range(20)]  # one partition: offsets 0..19
    await eventually(lambda: _applied_all(pair, {e.event_id for e in first}), timeout=30)

    broker.kill()
    broker.start()
    # The consumer keeps running through the outage: its position (20) is beyond the new log.
    second = [await pair.write("stock-1", n) for n in range(20, 25)]
    await eventually(lambda: _applied_all(pair, {e.event_id for e in second}), timeout=60)
    assert len(await pair.applied()) == 25
    await eventually(lambda: _not_stuck(delivery), timeout=30)


async def _has(pair, count: int) -> bool:
    return len(await pair.applied()) >= count


async def _unsent_is(pair, count: int) -> bool:
    return await pair.unsent() == count


async def _applied_all(pair, wanted: set[object]) -> bool:
    return wanted <= await applied_ids(pair)


async def _not_stuck(delivery: Delivery) -> bool:
    return delivery.consumer.stuck is None


class TailLost:
    """A Kafka cluster after an unclean leader election: each partition holds what ``logs``
    maps its offsets to, the tail it had acknowledged is gone."""

    def __init__(self, logs: dict[TopicPartition, dict[int, str]], partitions: int) -> None:
        self.logs = logs
        self.partitions = partitions
        self.reads: list[tuple[TopicPartition, int, int]] = []

    async def partition_counts(self, topics) -> dict[str, int]:
        return {t: self.partitions for t in topics}

    async def bounds(self, partitions):
        return {
            tp: LogBounds(0, max(self.logs.get(tp, {-1: ""}), default=-1) + 1) for tp in partitions
        }

    async def event_ids(self, tp, start: int, end: int) -> dict[int, str]:
        self.reads.append((tp, start, end))
        return {o: e for o, e in self.logs.get(tp, {}).items() if start <= o < end}

    async def ensure_topics(self, topics, partitions: int) -> None:
        raise AssertionError("no topic is missing")

    async def close(self) -> None:
        return None


@pytest.mark.smoke
async def test_a_partition_that_lost_its_tail_gets_only_the_tail_again(pair) -> None:
    memory = InMemoryBroker()
    events = [await pair.write(f"stock-{n % 3}", n) for n in range(30)]
    assert await pair.relay(InMemoryPublisher(memory)).relay_once() == 30
    logs: dict[TopicPartition, dict[int, str]] = {}
    for message in memory.messages(pair.topic):
        logs.setdefault(message.tp, {})[message.offset] = message.header("event_id") or ""
    lost: set[str] = set()
    for tp, log in logs.items():
        keep = len(log) // 2
        lost |= {e for o, e in log.items() if o >= keep}
        logs[tp] = {o: e for o, e in log.items() if o < keep}

    auditor = LogAuditor(
        pair.producer, TailLost(logs, memory.partitions), service="producer", partitions=3
    )
    report = await auditor.audit_once()
    assert sum(report.rearmed.values()) == len(lost)
    async with pair.producer.transaction() as session:
        unsent = {
            str(r[0])
            for r in await session.execute(sa.text("SELECT id FROM outbox WHERE sent_at IS NULL"))
        }
    assert unsent == lost
    assert lost <= {str(e.event_id) for e in events}
    # The relay publishes the tail again; the next audit finds the log whole.
    relay = pair.relay(InMemoryPublisher(memory))
    assert await relay.relay_once() == len(lost)
    logs.clear()
    for message in memory.messages(pair.topic):
        logs.setdefault(message.tp, {})[message.offset] = message.header("event_id") or ""
    assert (await auditor.audit_once()).clean


async def test_missing_topics_are_created_with_our_partitions_never_implicitly(servers) -> None:
    bootstrap = servers.kafka_bootstrap_servers
    inspector = KafkaLogInspector(bootstrap, call_timeout=5)
    asked, published, consumed = (f"inventory.test-{secrets.token_hex(4)}" for _ in range(3))
    # Asking the broker about a topic (what a producer or a consumer does first) creates nothing.
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=1000)
    await producer.start()
    try:
        with pytest.raises(KafkaError):
            await producer.send_and_wait(asked, b"x")
    finally:
        await producer.stop()
    publisher = KafkaPublisher(bootstrap, partitions=5, publish_timeout=5)
    transport = KafkaConsumerTransport(
        bootstrap, group_id=f"g-{secrets.token_hex(4)}", topics=[consumed], partitions=5
    )
    try:
        await publisher.publish([OutgoingMessage(published, b"k", b"v")])
        await transport.start()
        counts = await inspector.partition_counts([asked, published, consumed])
    finally:
        await transport.stop()
        await publisher.stop()
        await inspector.close()
    assert counts == {published: 5, consumed: 5}
