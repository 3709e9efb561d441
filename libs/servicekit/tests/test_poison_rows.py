"""One bad outbox row never blocks the others: a failed batch goes row by row, a row the
broker refuses (over the producer's size limit) is parked at once with an alert, a row that
keeps failing alone is parked after its attempts, a broker outage parks nothing, and an
operator can re-arm parked rows and replay a window."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from contracts.topics import ALERTS_TOPIC
from servicekit.bus.base import Delivery, OutgoingMessage, PublishError
from servicekit.bus.kafka import KafkaPublisher
from servicekit.bus.memory import InMemoryBroker, InMemoryPublisher
from servicekit.replay import _main, _parser, replay
from servicekit.testing.servers import Servers


class FlakyFor:
    """A publisher that fails, for the bus's reasons, every publish holding one event."""

    def __init__(self, inner: InMemoryPublisher, event_id: str) -> None:
        self.inner = inner
        self.event_id = event_id.encode()

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def ping(self) -> None: ...

    async def publish(self, messages: Sequence[OutgoingMessage]) -> list[Delivery]:
        if any(("event_id", self.event_id) in m.headers for m in messages):
            raise PublishError("KafkaTimeoutError: request timed out")
        return await self.inner.publish(messages)


async def outbox_rows(pair) -> list[dict[str, object]]:
    async with pair.producer.transaction() as session:
        rows = await session.execute(
            sa.text(
                "SELECT id, type, topic, sent_at, parked_at, attempts, last_error, "
                "kafka_partition, kafka_offset, payload FROM outbox ORDER BY seq"
            )
        )
        return [dict(r._mapping) for r in rows]


@pytest.mark.smoke
async def test_oversized_event_is_parked_at_once_and_its_lane_moves_on(
    pair, servers: Servers
) -> None:
    publisher = KafkaPublisher(servers.kafka_bootstrap_servers, publish_timeout=5)
    try:
        before = await pair.write("stock-1", 1)
        huge = await pair.write("stock-1", 2, note="x" * 1_500_000)  # over 1 MiB
        after = [await pair.write("stock-1", n) for n in range(3, 6)]
        relay = pair.relay(publisher)
        assert await relay.relay_once() == 4  # everything but the huge one, in one pass
        rows = {r["id"]: r for r in await outbox_rows(pair)}
        parked = rows[huge.event_id]
        assert parked["parked_at"] is not None
        assert parked["sent_at"] is None
        assert "MessageSizeTooLarge" in str(parked["last_error"])
        for event in [before, *after]:
            assert rows[event.event_id]["sent_at"] is not None
            assert rows[event.event_id]["kafka_offset"] is not None
        assert await relay.parked() == 1

        # The alert is an outbox row of its own, published by the next pass.
        (alert,) = [r for r in rows.values() if r["topic"] == ALERTS_TOPIC]
        assert alert["type"] == "platform.outbox.row_parked"
        body = alert["payload"]["payload"]  # type: ignore[index]
        assert body["outbox_id"] == str(huge.event_id)
        assert body["size_bytes"] > 1024 * 1024
        assert await relay.relay_once() == 1
        assert await relay.relay_once() == 0  # the parked row is not tried again
    finally:
        await publisher.stop()


async def test_row_failing_alone_is_parked_after_its_attempts_others_flow(pair) -> None:
    broker = InMemoryBroker()
    bad = await pair.write("stock-9", 0)
    good = [await pair.write(f"stock-{n}", n) for n in range(1, 5)]
    relay = pair.relay(FlakyFor(InMemoryPublisher(broker), str(bad.event_id)), max_attempts=3)
    sent = [await relay.relay_once() for _ in range(3)]
    assert sent == [4, 0, 0]
    rows = {r["id"]: r for r in await outbox_rows(pair)}
    assert rows[bad.event_id]["parked_at"] is not None
    assert rows[bad.event_id]["attempts"] == 3
    assert {m.header("event_id") for m in broker.messages(pair.topic)} == {
        str(e.event_id) for e in good
    }
    # Later events of the parked row's aggregate are not held back by it.
    later = await pair.write("stock-9", 10)
    assert await relay.relay_once() >= 1
    assert str(later.event_id) in {m.header("event_id") for m in broker.messages(pair.topic)}


async def test_later_events_of_a_failing_aggregate_wait_for_it(pair) -> None:
    broker = InMemoryBroker()
    first = await pair.write("stock-1", 0)
    second = await pair.write("stock-1", 1)
    other = await pair.write("stock-2", 2)
    relay = pair.relay(FlakyFor(InMemoryPublisher(broker), str(first.event_id)), max_attempts=5)
    assert await relay.relay_once() == 1
    published = {m.header("event_id") for m in broker.messages(pair.topic)}
    assert published == {str(other.event_id)}  # second waits behind first: order holds
    rows = {r["id"]: r for r in await outbox_rows(pair)}
    assert rows[second.event_id]["sent_at"] is None
    assert rows[first.event_id]["attempts"] == 1


async def test_a_broker_outage_parks_nothing(pair) -> None:
    broker = InMemoryBroker()
    broker.available = False
    for n in range(5):
        await pair.write(f"stock-{n}", n)
    relay = pair.relay(InMemoryPublisher(broker), max_attempts=2)
    for _ in range(4):
        with pytest.raises(PublishError):
            await relay.relay_once()
    rows = await outbox_rows(pair)
    assert all(r["parked_at"] is None and r["attempts"] == 0 for r in rows)
    broker.available = True
    assert await relay.relay_once() == 5


async def test_operator_unparks_and_replays_a_window(pair) -> None:
    broker = InMemoryBroker(max_message_bytes=2000)
    huge = await pair.write("stock-1", 1, note="y" * 3000)
    small = [await pair.write("stock-2", n) for n in range(3)]
    relay = pair.relay(InMemoryPublisher(broker))
    assert await relay.relay_once() == 3
    assert await relay.relay_once() == 1  # the alert
    assert await relay.parked() == 1

    broker.max_message_bytes = 10_000  # the limit was raised
    result = await replay(pair.producer, unpark=True)
    assert (result.rearmed, result.unparked) == (0, 1)
    assert await relay.relay_once() == 1
    assert str(huge.event_id) in {m.header("event_id") for m in broker.messages(pair.topic)}

    # Replaying the window re-publishes every row sent in it, under the same event ids.
    before = Counter(m.header("event_id") for m in broker.messages(pair.topic))
    result = await replay(
        pair.producer, since=datetime.now(UTC) - timedelta(minutes=5), topics=[pair.topic]
    )
    assert result.rearmed == 4
    assert await relay.relay_once() == 4
    again = Counter(m.header("event_id") for m in broker.messages(pair.topic)) - before
    assert again == Counter(str(e.event_id) for e in [*small, huge])
    count, _ = await relay.backlog()
    assert count == 0


async def test_replay_command_rearms_a_window_of_one_topic(pair) -> None:
    broker = InMemoryBroker()
    events = [await pair.write(f"stock-{n}", n) for n in range(3)]
    relay = pair.relay(InMemoryPublisher(broker))
    assert await relay.relay_once() == 3
    url = pair.producer.engine.url.render_as_string(hide_password=False)
    since = (datetime.now(UTC) - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%MZ")
    args = _parser().parse_args(
        [
            "--service",
            "inventory",
            "--since",
            since,
            "--topic",
            "other.topic",
            "--database-url",
            url,
        ]
    )
    assert (await _main(args)).rearmed == 0  # another topic: nothing
    args = _parser().parse_args(
        ["--service", "inventory", "--since", since, "--topic", pair.topic, "--database-url", url]
    )
    assert (await _main(args)).rearmed == 3
    assert await relay.relay_once() == 3
    assert Counter(m.header("event_id") for m in broker.messages(pair.topic)) == Counter(
        {str(e.event_id): 2 for e in events}
    )
