"""An in-memory bus with Kafka's semantics that matter here: partitions chosen by key, per-
partition order, consumer-group offsets that survive a consumer restart, at-least-once.

For unit tests that need the relay and consumers without a broker. Not shared between
processes. One consumer per group at a time receives every partition.
"""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from collections import defaultdict
from collections.abc import Iterable, Sequence

from servicekit.bus.base import (
    BusMessage,
    Delivery,
    OutgoingMessage,
    PublishError,
    TopicPartition,
)


class InMemoryBroker:
    def __init__(self, partitions: int = 3, *, max_message_bytes: int = 1024 * 1024) -> None:
        self.partitions = partitions
        # Kafka's producer refuses a message over max_request_size; so does this broker.
        self.max_message_bytes = max_message_bytes
        self._logs: dict[TopicPartition, list[BusMessage]] = defaultdict(list)
        self._committed: dict[tuple[str, TopicPartition], int] = {}
        self._changed = asyncio.Condition()
        self.available = True

    def _partition_for(self, key: bytes | None, counter: int) -> int:
        if key is None:
            return counter % self.partitions
        return zlib.crc32(key) % self.partitions

    async def append(self, messages: Sequence[OutgoingMessage]) -> list[Delivery]:
        if not self.available:
            raise PublishError("in-memory broker is unavailable")
        rejected = {
            i: f"MessageSizeTooLargeError: {len(m.value)} bytes"
            for i, m in enumerate(messages)
            if len(m.value) > self.max_message_bytes
        }
        deliveries: list[Delivery] = []
        async with self._changed:
            for i, m in enumerate(messages):
                if i in rejected:
                    continue
                tp = TopicPartition(m.topic, self._partition_for(m.key, i))
                log = self._logs[tp]
                log.append(
                    BusMessage(
                        topic=m.topic,
                        partition=tp.partition,
                        offset=len(log),
                        key=m.key,
                        value=m.value,
                        headers=list(m.headers),
                    )
                )
                deliveries.append(Delivery(tp.partition, len(log) - 1))
            self._changed.notify_all()
        if rejected:
            raise PublishError("the broker refused messages", rejected=rejected)
        return deliveries

    def messages(self, topic: str) -> list[BusMessage]:
        """Everything published to ``topic``, partition by partition (for assertions)."""
        out: list[BusMessage] = []
        for tp in sorted(t for t in self._logs if t.topic == topic):
            out.extend(self._logs[tp])
        return out

    def committed(self, group: str, tp: TopicPartition) -> int:
        return self._committed.get((group, tp), 0)

    def commit(self, group: str, offsets: dict[TopicPartition, int]) -> None:
        for tp, offset in offsets.items():
            self._committed[(group, tp)] = offset

    def end_offset(self, tp: TopicPartition) -> int:
        return len(self._logs[tp])

    def partitions_of(self, topics: Iterable[str]) -> list[TopicPartition]:
        return [TopicPartition(t, p) for t in topics for p in range(self.partitions)]

    async def wait_for_change(self, timeout: float) -> None:
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout)


class InMemoryPublisher:
    def __init__(self, broker: InMemoryBroker) -> None:
        self.broker = broker

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def publish(self, messages: Sequence[OutgoingMessage]) -> list[Delivery]:
        return await self.broker.append(messages)

    async def ping(self) -> None:
        if not self.broker.available:
            raise PublishError("in-memory broker is unavailable")


class InMemoryConsumerTransport:
    def __init__(self, broker: InMemoryBroker, *, group_id: str, topics: Iterable[str]) -> None:
        self.broker = broker
        self.group_id = group_id
        self._topics = sorted(set(topics))
        self._positions: dict[TopicPartition, int] = {}

    async def start(self) -> None:
        self._positions = {
            tp: self.broker.committed(self.group_id, tp)
            for tp in self.broker.partitions_of(self._topics)
        }

    async def stop(self) -> None:
        self._positions = {}

    def _ready(self, max_records: int) -> dict[TopicPartition, list[BusMessage]]:
        out: dict[TopicPartition, list[BusMessage]] = {}
        budget = max_records
        for tp, position in self._positions.items():
            if budget <= 0:
                break
            log = self.broker._logs[tp]
            if position < len(log):
                chunk = log[position : position + budget]
                out[tp] = chunk
                budget -= len(chunk)
                self._positions[tp] = position + len(chunk)
        return out

    async def fetch(
        self, timeout_ms: int, max_records: int
    ) -> dict[TopicPartition, list[BusMessage]]:
        ready = self._ready(max_records)
        if not ready:
            await self.broker.wait_for_change(timeout_ms / 1000)
            ready = self._ready(max_records)
        return ready

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.broker.commit(self.group_id, offsets)

    async def seek_back(self, tp: TopicPartition, offset: int) -> None:
        self._positions[tp] = offset

    def assigned(self) -> int:
        return len(self._positions)

    async def lag(self) -> dict[TopicPartition, int]:
        return {
            tp: self.broker.end_offset(tp) - position for tp, position in self._positions.items()
        }
