"""Consumers never wedge: a consumer whose offset commits keep failing, that holds no
partition, or whose fetch never returns restarts itself, reports itself stuck meanwhile (the
``countertop_consumer_stuck`` gauge and ``/readyz``), and recovers without applying anything
twice."""

from __future__ import annotations

import asyncio
from typing import ClassVar

import httpx
import pytest

from servicekit.app import Runtime, create_app
from servicekit.bus.base import BusMessage, TopicPartition
from servicekit.bus.factory import InMemoryBus
from servicekit.bus.memory import InMemoryBroker, InMemoryConsumerTransport, InMemoryPublisher
from servicekit.settings import ServiceSettings
from servicekit.telemetry import metrics
from servicekit.testing.wait import eventually


class FailingCommits(InMemoryConsumerTransport):
    failing = True

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if self.failing:
            raise TimeoutError("offset commit timed out")
        await super().commit(offsets)


class NeverAssigned(InMemoryConsumerTransport):
    def assigned(self) -> int:
        return 0

    async def fetch(
        self, timeout_ms: int, max_records: int
    ) -> dict[TopicPartition, list[BusMessage]]:
        # As a real transport: the fetch waits out its timeout when nothing is assigned.
        await asyncio.sleep(timeout_ms / 1000)
        return {}


class HangingFetch(InMemoryConsumerTransport):
    async def fetch(
        self, timeout_ms: int, max_records: int
    ) -> dict[TopicPartition, list[BusMessage]]:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


def stuck_gauge(group: str) -> float:
    return metrics.consumer_stuck.labels("consumer", group)._value.get()


@pytest.mark.smoke
async def test_consumer_whose_commits_keep_failing_restarts_and_recovers(pair) -> None:
    broker = InMemoryBroker()
    events = [await pair.write(f"stock-{n % 3}", n) for n in range(9)]
    await pair.relay(InMemoryPublisher(broker)).relay_once()
    transport = FailingCommits(broker, group_id="commits", topics=[pair.topic])
    consumer = pair.consumer_for(transport, InMemoryPublisher(broker), group="commits")
    consumer.max_commit_failures = 2
    consumer.max_restart_backoff = 0.05
    await consumer.start()
    try:
        await eventually(lambda: _restarted(consumer), timeout=10)
        assert consumer.stuck is not None
        assert "commit" in consumer.stuck
        assert stuck_gauge("commits") == 1

        transport.failing = False
        await eventually(lambda: _committed(broker, "commits", pair.topic, 9), timeout=10)
        await eventually(lambda: _healthy(consumer), timeout=10)
        assert stuck_gauge("commits") == 0
    finally:
        await consumer.stop()
    applied = await pair.applied()
    assert sorted(r[0] for r in applied) == sorted(e.event_id for e in events)  # once each


async def test_consumer_without_partitions_restarts(pair) -> None:
    broker = InMemoryBroker()
    transport = NeverAssigned(broker, group_id="idle", topics=[pair.topic])
    consumer = pair.consumer_for(transport, InMemoryPublisher(broker), group="idle")
    consumer.assignment_timeout = 0.2
    consumer.max_restart_backoff = 0.05
    await consumer.start()
    try:
        await eventually(lambda: _restarted(consumer), timeout=10)
        assert consumer.stuck is not None
        assert "no partition assigned" in consumer.stuck
    finally:
        await consumer.stop()


async def test_consumer_whose_fetch_hangs_restarts(pair) -> None:
    broker = InMemoryBroker()
    transport = HangingFetch(broker, group_id="hang", topics=[pair.topic])
    consumer = pair.consumer_for(transport, InMemoryPublisher(broker), group="hang")
    consumer.fetch_deadline = 0.2
    consumer.max_restart_backoff = 0.05
    await consumer.start()
    try:
        await eventually(lambda: _restarted(consumer), timeout=10)
        assert consumer.stuck is not None
        assert "fetch" in consumer.stuck
    finally:
        await consumer.stop()


class ReadySettings(ServiceSettings):
    service_name: ClassVar[str] = "readiness"


class Healthy:
    async def ping(self) -> None:
        return None


async def test_readyz_is_not_ready_while_a_consumer_group_is_stuck(pair) -> None:
    broker = InMemoryBroker()
    transport = FailingCommits(broker, group_id="ready", topics=[pair.topic])
    consumer = pair.consumer_for(transport, InMemoryPublisher(broker), group="ready")
    app = create_app(ReadySettings(), title="readiness", bus=InMemoryBus(broker))
    runtime = Runtime(settings=ReadySettings(), database=pair.consumer, bus=InMemoryBus(broker))
    runtime.consumers.append(consumer)
    runtime.extras["health_publisher"] = Healthy()
    app.state.runtime = runtime
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as client:
        assert (await client.get("/readyz")).status_code == 200
        consumer._set_stuck("offset commits failing: timed out")
        response = await client.get("/readyz")
        assert response.status_code == 503
        assert response.json()["checks"]["consumers"].startswith("stuck: ready")
        consumer._set_stuck(None)
        assert (await client.get("/readyz")).status_code == 200


async def _restarted(consumer) -> bool:
    return consumer.restarts >= 1


async def _healthy(consumer) -> bool:
    return consumer.stuck is None


async def _committed(broker: InMemoryBroker, group: str, topic: str, total: int) -> bool:
    return sum(broker.committed(group, tp) for tp in broker.partitions_of([topic])) == total
