"""The relay and the consumer on the in-memory bus (fast), plus the relay's own duties on the
real database: wake-up on NOTIFY, per-aggregate order with several relays, pruning."""

from __future__ import annotations

import asyncio
from collections import defaultdict

import sqlalchemy as sa

from servicekit.bus.memory import InMemoryBroker, InMemoryConsumerTransport, InMemoryPublisher
from servicekit.testing.wait import eventually


def memory_consumer(pair, broker: InMemoryBroker, group: str = "g", **kwargs):
    return pair.consumer_for(
        InMemoryConsumerTransport(broker, group_id=group, topics=[pair.topic]),
        InMemoryPublisher(broker),
        group=group,
        **kwargs,
    )


async def test_in_memory_bus_applies_each_event_once(pair, memory_broker) -> None:
    for n in range(20):
        await pair.write(f"stock-{n % 5}", n)
    relay = pair.relay(InMemoryPublisher(memory_broker))
    assert await relay.relay_once() == 20
    consumer = memory_consumer(pair, memory_broker)
    await consumer.transport.start()
    await pair.drain(consumer, 20)
    assert consumer.stats.applied == 20

    # A second delivery of everything (a relay that crashed before marking sent):
    await memory_broker.append(
        [
            __import__("servicekit.bus.base", fromlist=["OutgoingMessage"]).OutgoingMessage(
                topic=m.topic, key=m.key, value=m.value, headers=m.headers
            )
            for m in memory_broker.messages(pair.topic)
        ]
    )
    await pair.drain(consumer, 20)
    assert len(await pair.applied()) == 20
    assert consumer.stats.duplicates == 20


async def test_one_failing_event_does_not_block_its_batch(pair, memory_broker) -> None:
    for n in range(6):
        await pair.write("stock-1", n)
    await pair.relay(InMemoryPublisher(memory_broker)).relay_once()
    consumer = memory_consumer(
        pair, memory_broker, fail_when=lambda e: e.payload["n"] == 3, max_attempts=2
    )
    await consumer.transport.start()
    await pair.drain(consumer, 5)
    assert [r[2] for r in await pair.applied()] == [0, 1, 2, 4, 5]
    dead = memory_broker.messages(pair.topic + ".dlq")
    assert len(dead) == 1
    assert dead[0].header("dlq_consumer") == "g"
    # The offset moved past the poison message: a restarted consumer does not see it again.
    assert memory_broker.committed("g", dead[0].tp._replace(topic=pair.topic)) > 0


async def test_undecodable_message_goes_to_dlq(pair, memory_broker) -> None:
    from servicekit.bus.base import OutgoingMessage

    await memory_broker.append([OutgoingMessage(topic=pair.topic, key=b"k", value=b"not json")])
    await pair.write("k", 1)
    await pair.relay(InMemoryPublisher(memory_broker)).relay_once()
    consumer = memory_consumer(pair, memory_broker)
    await consumer.transport.start()
    await pair.drain(consumer, 1)
    assert consumer.stats.dead_lettered == 1
    assert "not a valid event envelope" in consumer.stats.dead_letter_reasons[0]


async def test_relay_wakes_on_notify_without_waiting_for_the_poll(pair, memory_broker) -> None:
    relay = pair.relay(InMemoryPublisher(memory_broker), poll_interval=60)
    await relay.start()
    try:
        await asyncio.wait_for(relay.listening.wait(), timeout=10)
        await eventually(lambda: _idle(relay), timeout=10)  # the first pass found nothing
        await pair.write("stock-1", 1)

        async def published() -> bool:
            return len(memory_broker.messages(pair.topic)) == 1

        await eventually(published, timeout=10)
    finally:
        await relay.stop()


async def test_several_relays_keep_per_aggregate_order(pair, memory_broker) -> None:
    keys = [f"order-{i}" for i in range(8)]
    relays = [
        pair.relay(InMemoryPublisher(memory_broker), batch_size=7, poll_interval=0.05)
        for _ in range(3)
    ]
    for relay in relays:
        await relay.start()
    try:
        for n in range(200):
            await pair.write(keys[n % len(keys)], n)

        async def drained() -> bool:
            return await pair.unsent() == 0

        await eventually(drained, timeout=30)
    finally:
        for relay in relays:
            await relay.stop()
    seen: dict[str, list[int]] = defaultdict(list)
    import json

    for message in memory_broker.messages(pair.topic):
        event = json.loads(message.value)
        seen[event["aggregate_id"]].append(event["payload"]["n"])
    for key, ns in seen.items():
        deduped = list(dict.fromkeys(ns))
        assert deduped == sorted(deduped), f"{key} published out of order"
    assert sum(len(set(v)) for v in seen.values()) == 200


async def test_prune_deletes_only_old_sent_rows(pair, memory_broker) -> None:
    for n in range(5):
        await pair.write("stock-1", n)
    relay = pair.relay(InMemoryPublisher(memory_broker), retention_seconds=3600)
    await relay.relay_once()
    await pair.write("stock-1", 99)  # unsent: never pruned
    async with pair.producer.transaction() as session:
        await session.execute(
            sa.text(
                "UPDATE outbox SET sent_at = now() - interval '2 hours' "
                "WHERE sent_at IS NOT NULL AND (payload->'payload'->>'n')::int < 3"
            )
        )
    assert await relay.prune() == 3
    count, oldest = await relay.backlog()
    assert count == 1
    assert oldest is not None
    async with pair.producer.transaction() as session:
        remaining = (await session.execute(sa.text("SELECT count(*) FROM outbox"))).scalar_one()
    assert remaining == 3


async def _idle(relay) -> bool:
    # The pass the LISTEN connection triggered has run: the relay sleeps until woken.
    return not relay._wake.is_set()
