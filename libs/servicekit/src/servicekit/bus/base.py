"""The transport interface the outbox relay and the consumers are written against."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol


class TopicPartition(NamedTuple):
    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class BusMessage:
    """A message as a consumer receives it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]

    @property
    def tp(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value.decode()
        return None


@dataclass(frozen=True, slots=True)
class Delivery:
    """Where the broker acknowledged a message: its partition and its offset there."""

    partition: int
    offset: int


class TopicsMissing(Exception):
    """A consumer subscribes to topics the broker does not have (it lost them): it must
    restart, which creates them again."""


class PublishError(Exception):
    """The bus did not acknowledge a message; nothing can be assumed about delivery.

    ``rejected`` maps the index of each message the broker refused for what it is (too large,
    invalid) to the reason: sending it again will fail again. Without it the failure is the
    bus's (unreachable, timed out) and says nothing about the messages.
    """

    def __init__(self, message: str, *, rejected: Mapping[int, str] | None = None) -> None:
        super().__init__(message)
        self.rejected: dict[int, str] = dict(rejected or {})

    @property
    def transient(self) -> bool:
        return not self.rejected


class PublisherTransport(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def publish(self, messages: Sequence[OutgoingMessage]) -> list[Delivery]:
        """Publish in order; return where each message landed once every message is
        acknowledged, raise PublishError otherwise (some may have been delivered:
        at-least-once)."""
        ...

    async def ping(self) -> None:
        """Raise when the bus is unreachable."""
        ...


class ConsumerTransport(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def fetch(
        self, timeout_ms: int, max_records: int
    ) -> dict[TopicPartition, list[BusMessage]]: ...

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        """Commit the next offset to read for each partition."""
        ...

    async def seek_back(self, tp: TopicPartition, offset: int) -> None:
        """Read ``tp`` again from ``offset`` (a batch that was not applied)."""
        ...

    async def lag(self) -> dict[TopicPartition, int]:
        """Messages not yet consumed per assigned partition (for metrics)."""
        ...

    def assigned(self) -> int:
        """How many partitions this member holds now."""
        ...


@dataclass(frozen=True, slots=True)
class LogBounds:
    """The offsets a partition's log holds: ``start`` (first kept) to ``end`` (next to write)."""

    start: int
    end: int


class LogInspector(Protocol):
    """Read-only look at the broker's logs, for the outbox's log auditor."""

    async def partition_counts(self, topics: Iterable[str]) -> dict[str, int]:
        """Partitions of each topic that exists (a missing topic is absent)."""
        ...

    async def bounds(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, LogBounds]:
        """The log start and end offsets of each partition."""
        ...

    async def event_ids(self, tp: TopicPartition, start: int, end: int) -> dict[int, str]:
        """The ``event_id`` header of every message at offsets ``start`` to ``end - 1``."""
        ...

    async def ensure_topics(self, topics: Iterable[str], partitions: int) -> None:
        """Create the topics that do not exist, with ``partitions`` partitions."""
        ...

    async def close(self) -> None: ...
