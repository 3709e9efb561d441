"""An event written in one service's transaction reaches a consumer in another service and
is applied exactly once in effect, against the real PostgreSQL and the real broker, through
rollbacks, crashes between two steps, a broker outage and a poison message."""

from __future__ import annotations

import secrets
from collections import defaultdict
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer

from servicekit.bus.base import PublishError
from servicekit.bus.kafka import KafkaConsumerTransport, KafkaPublisher, ensure_topics
from servicekit.consumer import ConsumerStuck
from servicekit.embedded.kafka import EmbeddedKafka
from servicekit.embedded.ports import free_port
from servicekit.testing.proxy import TcpProxy
from servicekit.testing.servers import Servers

pytestmark = pytest.mark.smoke


def group() -> str:
    return f"consumer-{secrets.token_hex(4)}"


@pytest_asyncio.fixture(loop_scope="session")
async def publisher(servers: Servers) -> AsyncIterator[KafkaPublisher]:
    p = KafkaPublisher(servers.kafka_bootstrap_servers)
    await p.start()
    yield p
    await p.stop()


# Short group timeouts: a consumer that died is replaced quickly (the broker waits a session
# timeout before handing its partitions to the next member) and joining is quick on Tansu.
FAST_GROUP = {
    "session_timeout_ms": 2000,
    "heartbeat_interval_ms": 500,
    "rebalance_timeout_ms": 1000,
}


def transport(servers: Servers, topic: str, group_id: str) -> KafkaConsumerTransport:
    return KafkaConsumerTransport(
        servers.kafka_bootstrap_servers, group_id=group_id, topics=[topic], **FAST_GROUP
    )


async def test_event_reaches_the_other_service_once(pair, publisher, servers) -> None:
    events = [await pair.write(f"stock-{i % 3}", i) for i in range(30)]
    assert await pair.relay(publisher).relay_once() == 30
    assert await pair.unsent() == 0
    consumer = pair.consumer_for(transport(servers, pair.topic, group()), publisher, group="g")
    await consumer.transport.start()
    try:
        await pair.drain(consumer, 30)
    finally:
        await consumer.transport.stop()
    applied = await pair.applied()
    assert sorted(r[0] for r in applied) == sorted(e.event_id for e in events)


async def test_rolled_back_transaction_publishes_nothing(pair, publisher, servers) -> None:
    await pair.write("stock-1", 1, fail=True)
    assert await pair.unsent() == 0
    assert await pair.relay(publisher).relay_once() == 0
    kept = await pair.write("stock-1", 2)
    assert await pair.relay(publisher).relay_once() == 1
    consumer = pair.consumer_for(transport(servers, pair.topic, group()), publisher, group="g")
    await consumer.transport.start()
    try:
        await pair.drain(consumer, 1)
    finally:
        await consumer.transport.stop()
    assert [r[0] for r in await pair.applied()] == [kept.event_id]


async def test_relay_crash_after_publish_before_marking_sent(pair, publisher, servers) -> None:
    for i in range(10):
        await pair.write(f"stock-{i % 2}", i)
    crashing = pair.relay(publisher)

    async def crash(*_: object) -> None:
        raise RuntimeError("relay process killed")

    crashing._mark_sent = crash  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        await crashing.relay_once()
    # Published, but the claim rolled back: the rows are still unsent and not locked.
    assert await pair.unsent() == 10
    assert await pair.relay(publisher).relay_once() == 10  # a restarted relay sends again
    assert await pair.unsent() == 0

    consumer = pair.consumer_for(transport(servers, pair.topic, group()), publisher, group="g")
    await consumer.transport.start()
    try:
        await pair.drain(consumer, 10)
    finally:
        await consumer.transport.stop()
    assert len(await pair.applied()) == 10
    assert consumer.stats.duplicates == 10  # delivered twice, applied once


async def test_consumer_crash_after_commit_before_offset_commit(pair, publisher, servers) -> None:
    for i in range(12):
        await pair.write(f"stock-{i % 4}", i)
    await pair.relay(publisher).relay_once()
    group_id = group()
    first = pair.consumer_for(transport(servers, pair.topic, group_id), publisher, group="g")
    await first.transport.start()

    async def crash(*_: object) -> None:
        raise RuntimeError("consumer process killed before committing its offset")

    first.transport.commit = crash  # type: ignore[method-assign]
    first.max_commit_failures = 1

    async def poll_until_crash() -> None:
        while True:
            await first.poll_once(timeout_ms=500)

    with pytest.raises(ConsumerStuck, match="killed before committing"):
        await poll_until_crash()
    await first.transport.stop()
    applied_before = len(await pair.applied())
    assert applied_before > 0  # the database transaction did commit

    second = pair.consumer_for(transport(servers, pair.topic, group_id), publisher, group="g")
    await second.transport.start()
    try:
        await pair.drain(second, 12)
    finally:
        await second.transport.stop()
    applied = await pair.applied()
    assert len(applied) == 12
    assert len({r[0] for r in applied}) == 12
    assert second.stats.duplicates == applied_before  # redelivered, skipped by the inbox


async def test_poison_message_goes_to_dlq_and_partition_moves_on(pair, publisher, servers) -> None:
    events = [await pair.write("stock-7", n) for n in range(5)]  # one key: one partition
    await pair.relay(publisher).relay_once()
    consumer = pair.consumer_for(
        transport(servers, pair.topic, group()),
        publisher,
        group="g",
        fail_when=lambda e: e.payload["n"] == 2,
        max_attempts=3,
    )
    await consumer.transport.start()
    try:
        await pair.drain(consumer, 4)
    finally:
        await consumer.transport.stop()
    assert [r[2] for r in await pair.applied()] == [0, 1, 3, 4]
    assert consumer.stats.dead_lettered == 1
    assert consumer.stats.failures == 3

    dlq = AIOKafkaConsumer(
        pair.topic + ".dlq",
        bootstrap_servers=servers.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
        group_id=group(),
    )
    await dlq.start()
    try:
        batch = await dlq.getmany(timeout_ms=5000)
    finally:
        await dlq.stop()
    records = [r for rs in batch.values() for r in rs]
    assert len(records) == 1
    headers = {k: v.decode() for k, v in records[0].headers}
    assert headers["event_id"] == str(events[2].event_id)
    assert "cannot apply event n=2" in headers["dlq_reason"]
    assert headers["dlq_source_topic"] == pair.topic


async def test_broker_outage_holds_events_then_drains_in_order(pair) -> None:
    # A broker of our own behind a proxy that can cut it off; it advertises the proxy's
    # address so every client connection goes through the proxy.
    proxy_port = free_port()
    broker = EmbeddedKafka(port=free_port(), advertised_port=proxy_port)
    broker.start()
    proxy = TcpProxy(proxy_port, "127.0.0.1", broker.port)
    await proxy.start()
    bootstrap = f"127.0.0.1:{proxy_port}"
    publisher = KafkaPublisher(bootstrap, publish_timeout=3)
    try:
        await ensure_topics(bootstrap, [pair.topic, pair.topic + ".dlq"], 3)
        await publisher.start()
        await proxy.cut()
        for n in range(40):
            await pair.write(f"stock-{n % 4}", n)
        relay = pair.relay(publisher, max_backoff=0.5)
        with pytest.raises(PublishError):
            await relay.relay_once()
        assert await pair.unsent() == 40  # the outbox holds everything

        await relay.start()  # keeps retrying with backoff while the broker is away
        await proxy.restore()
        consumer = pair.consumer_for(
            KafkaConsumerTransport(bootstrap, group_id=group(), topics=[pair.topic], **FAST_GROUP),
            publisher,
            group="g",
        )
        await consumer.transport.start()
        try:
            await pair.drain(consumer, 40, timeout=60)
        finally:
            await consumer.transport.stop()
            await relay.stop()
        assert await pair.unsent() == 0
        by_key: dict[str, list[int]] = defaultdict(list)
        for _, key, n in await pair.applied():
            by_key[key].append(n)
        assert set(by_key) == {"stock-0", "stock-1", "stock-2", "stock-3"}
        for key, ns in by_key.items():
            assert ns == sorted(ns), f"{key} applied out of order: {ns}"
            assert len(ns) == 10
    finally:
        await publisher.stop()
        await proxy.stop()
        broker.stop()
