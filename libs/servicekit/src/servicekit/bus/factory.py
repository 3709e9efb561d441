"""Which bus a service talks to: Kafka, or the in-memory bus in unit tests."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from servicekit.bus.base import ConsumerTransport, LogInspector, PublisherTransport
from servicekit.bus.kafka import (
    KafkaConsumerTransport,
    KafkaLogInspector,
    KafkaPublisher,
    ensure_topics,
)
from servicekit.bus.memory import InMemoryBroker, InMemoryConsumerTransport, InMemoryPublisher


class Bus(Protocol):
    def publisher(self, client_id: str) -> PublisherTransport: ...

    def consumer(
        self, group_id: str, topics: Iterable[str], client_id: str
    ) -> ConsumerTransport: ...

    async def ensure_topics(self, topics: Iterable[str], partitions: int) -> None: ...

    def log_inspector(self) -> LogInspector | None:
        """What the outbox's log auditor reads the broker with (None: nothing to audit)."""
        ...


class KafkaBus:
    def __init__(
        self,
        bootstrap_servers: str,
        *,
        session_timeout_ms: int = 10_000,
        heartbeat_interval_ms: int = 3_000,
        rebalance_timeout_ms: int = 5_000,
        fetch_max_wait_ms: int = 50,
        idle_fetch_max_wait_ms: int = 2_000,
        partitions: int = 3,
        call_timeout: float = 15.0,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.partitions = partitions
        self.call_timeout = call_timeout
        # A consumer that dies without leaving its group holds its partitions until the
        # session times out; the rebalance timeout bounds how long a (re)join waits.
        self._timeouts = {
            "session_timeout_ms": session_timeout_ms,
            "heartbeat_interval_ms": heartbeat_interval_ms,
            "rebalance_timeout_ms": rebalance_timeout_ms,
        }
        self._fetch_waits = {
            "fetch_max_wait_ms": fetch_max_wait_ms,
            "idle_fetch_max_wait_ms": idle_fetch_max_wait_ms,
        }

    def publisher(self, client_id: str) -> PublisherTransport:
        return KafkaPublisher(
            self.bootstrap_servers, client_id=client_id, partitions=self.partitions
        )

    def consumer(self, group_id: str, topics: Iterable[str], client_id: str) -> ConsumerTransport:
        return KafkaConsumerTransport(
            self.bootstrap_servers,
            group_id=group_id,
            topics=topics,
            client_id=client_id,
            partitions=self.partitions,
            call_timeout=self.call_timeout,
            **self._timeouts,
            **self._fetch_waits,
        )

    async def ensure_topics(self, topics: Iterable[str], partitions: int) -> None:
        await ensure_topics(self.bootstrap_servers, topics, partitions)

    def log_inspector(self) -> LogInspector | None:
        return KafkaLogInspector(self.bootstrap_servers, call_timeout=self.call_timeout)


class InMemoryBus:
    def __init__(self, broker: InMemoryBroker | None = None) -> None:
        self.broker = broker or InMemoryBroker()

    def publisher(self, client_id: str) -> PublisherTransport:
        return InMemoryPublisher(self.broker)

    def consumer(self, group_id: str, topics: Iterable[str], client_id: str) -> ConsumerTransport:
        return InMemoryConsumerTransport(self.broker, group_id=group_id, topics=topics)

    async def ensure_topics(self, topics: Iterable[str], partitions: int) -> None:
        return None

    def log_inspector(self) -> LogInspector | None:
        return None
