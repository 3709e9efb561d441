"""An idle service waits instead of polling, and a busy one does less per event, without
giving up a delivery guarantee: the consumer's adaptive fetch wait, a poll's partitions applied
together, the relay sleeping on NOTIFY after a batch that emptied its lanes, the log auditor
backing off while nothing is sent."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator

import pytest_asyncio

from servicekit.audit import LogAuditor
from servicekit.bus.base import OutgoingMessage
from servicekit.bus.kafka import KafkaConsumerTransport, KafkaLogInspector, KafkaPublisher
from servicekit.bus.memory import InMemoryBroker, InMemoryConsumerTransport, InMemoryPublisher
from servicekit.db import Database
from servicekit.testing.servers import Servers
from servicekit.testing.wait import eventually

FAST_GROUP = {
    "session_timeout_ms": 2000,
    "heartbeat_interval_ms": 500,
    "rebalance_timeout_ms": 1000,
}


@pytest_asyncio.fixture(loop_scope="session")
async def publisher(servers: Servers) -> AsyncIterator[KafkaPublisher]:
    p = KafkaPublisher(servers.kafka_bootstrap_servers, publish_timeout=10)
    yield p
    await p.stop()


@contextlib.contextmanager
def counting_transactions(database: Database) -> AsyncIterator[list[int]]:  # type: ignore[misc]
    """Counts the transactions ``database.transaction()`` opens inside the block."""
    original = database.transaction
    count = [0]

    @contextlib.asynccontextmanager
    async def counted():  # type: ignore[no-untyped-def]
        count[0] += 1
        async with original() as session:
            yield session

    database.transaction = counted  # type: ignore[method-assign]
    try:
        yield count
    finally:
        database.transaction = original  # type: ignore[method-assign]


# -- the consumer's fetch wait ------------------------------------------------------------


def test_fetch_wait_grows_with_the_quiet_time_and_is_short_while_records_flow() -> None:
    transport = KafkaConsumerTransport(
        "127.0.0.1:1", group_id="g", topics=["t"], fetch_max_wait_ms=50, idle_fetch_max_wait_ms=2000
    )
    start = transport._last_record_at
    assert transport.fetch_wait_ms(start) == 50
    assert transport.fetch_wait_ms(start + 0.05) == 50
    assert transport.fetch_wait_ms(start + 1.0) == 500  # half the quiet time
    assert transport.fetch_wait_ms(start + 4.0) == 2000
    assert transport.fetch_wait_ms(start + 600) == 2000  # capped


async def test_an_idle_consumer_waits_long_and_still_gets_a_record_promptly(
    servers: Servers, publisher: KafkaPublisher
) -> None:
    topic = f"inventory.quiet-{secrets.token_hex(4)}"
    await publisher.publish([OutgoingMessage(topic=topic, key=b"k", value=b"first")])
    transport = KafkaConsumerTransport(
        servers.kafka_bootstrap_servers,
        group_id=f"g-{secrets.token_hex(4)}",
        topics=[topic],
        idle_fetch_max_wait_ms=1000,
        call_timeout=5,
        **FAST_GROUP,
    )
    await transport.start()
    try:
        fetcher = transport._require()._fetcher

        async def got_first() -> bool:
            return bool(await transport.fetch(200, 10))

        await eventually(got_first, timeout=20)
        assert fetcher._fetch_max_wait_ms == 50  # records flow: short waits

        async def waits_long() -> bool:
            assert not await transport.fetch(200, 10)
            return fetcher._fetch_max_wait_ms == 1000

        await eventually(waits_long, timeout=20)

        # A record after the lull: at most about half the long wait, not a poll interval.
        sent = time.monotonic()
        await publisher.publish([OutgoingMessage(topic=topic, key=b"k", value=b"second")])
        received: list[bytes] = []

        async def got_second() -> bool:
            for messages in (await transport.fetch(200, 10)).values():
                received.extend(m.value for m in messages)
            return bool(received)

        await eventually(got_second, timeout=10)
        assert received == [b"second"]
        assert time.monotonic() - sent < 2.0
        assert fetcher._fetch_max_wait_ms == 50  # and short again at once
    finally:
        await transport.stop()


# -- a poll's partitions in one transaction -------------------------------------------------


def memory_consumer(pair, broker: InMemoryBroker, **kwargs):  # type: ignore[no-untyped-def]
    return pair.consumer_for(
        InMemoryConsumerTransport(broker, group_id="g", topics=[pair.topic]),
        InMemoryPublisher(broker),
        group="g",
        **kwargs,
    )


async def test_one_poll_over_several_partitions_is_applied_in_one_transaction(pair) -> None:
    broker = InMemoryBroker()
    for n in range(12):
        await pair.write(f"stock-{n % 6}", n)
    assert await pair.relay(InMemoryPublisher(broker)).relay_once() == 12
    assert len({m.partition for m in broker.messages(pair.topic)}) > 1
    consumer = memory_consumer(pair, broker)
    await consumer.transport.start()
    with counting_transactions(pair.consumer) as transactions:
        assert await consumer.poll_once(timeout_ms=1000) == 12
    assert transactions == [1]
    assert sorted(r[2] for r in await pair.applied()) == list(range(12))
    # Delivered again (a relay that crashed before marking sent): nothing applied twice.
    await broker.append(
        [
            OutgoingMessage(topic=m.topic, key=m.key, value=m.value, headers=m.headers)
            for m in broker.messages(pair.topic)
        ]
    )
    await pair.drain(consumer, 12)
    assert len(await pair.applied()) == 12
    assert consumer.stats.duplicates == 12


async def test_a_failing_event_in_a_poll_of_several_partitions_holds_back_no_other(pair) -> None:
    broker = InMemoryBroker()
    for n in range(12):
        await pair.write(f"stock-{n % 6}", n)
    await pair.relay(InMemoryPublisher(broker)).relay_once()
    consumer = memory_consumer(
        pair, broker, fail_when=lambda e: e.payload["n"] == 7, max_attempts=2
    )
    await consumer.transport.start()
    await pair.drain(consumer, 11)
    assert sorted(r[2] for r in await pair.applied()) == [n for n in range(12) if n != 7]
    dead = broker.messages(pair.topic + ".dlq")
    assert len(dead) == 1
    assert consumer.stats.applied == 11


# -- the relay after a batch that emptied its lanes --------------------------------------------


async def test_rows_committed_while_the_relay_publishes_are_not_left_for_the_poll(pair) -> None:
    broker = InMemoryBroker()
    relay = pair.relay(InMemoryPublisher(broker), poll_interval=60)
    cycles: list[int] = []
    relay_once = relay.relay_once

    async def counted() -> int:
        published = await relay_once()
        cycles.append(published)
        return published

    relay.relay_once = counted  # type: ignore[method-assign]
    await relay.start()
    try:
        await asyncio.wait_for(relay.listening.wait(), timeout=10)

        async def writer(w: int) -> None:
            for n in range(10):
                await pair.write(f"stock-{w}", w * 100 + n)

        # Rows keep committing while batches are published: each must wake a cycle.
        await asyncio.gather(*(writer(w) for w in range(6)))

        async def all_published() -> bool:
            return len(broker.messages(pair.topic)) == 60 and await pair.unsent() == 0

        await eventually(all_published, timeout=20)
        assert sum(cycles) == 60
    finally:
        await relay.stop()


# -- the log auditor while nothing is sent ----------------------------------------------------


async def test_the_auditor_backs_off_while_nothing_is_sent_and_not_once_rows_are(
    pair, servers: Servers, publisher: KafkaPublisher
) -> None:
    relay = pair.relay(publisher)
    auditor = LogAuditor(
        pair.producer,
        KafkaLogInspector(servers.kafka_bootstrap_servers, call_timeout=5),
        service="producer",
        partitions=3,
        interval=5,
        idle_interval=40,
    )
    try:
        await pair.write("stock-1", 1)
        assert await relay.relay_once() == 1
        waits = []
        for _ in range(5):
            report = await auditor.audit_once()
            assert report.clean, report.reasons
            auditor.note(report)
            waits.append(auditor.next_wait())
        # The first audit has nothing to compare with; then each finds nothing new.
        assert waits == [5, 10, 20, 40, 40]

        await pair.write("stock-2", 2)
        assert await relay.relay_once() == 1
        report = await auditor.audit_once()
        assert report.clean
        assert not report.unchanged
        auditor.note(report)
        assert auditor.next_wait() == 5
    finally:
        await auditor.stop()
