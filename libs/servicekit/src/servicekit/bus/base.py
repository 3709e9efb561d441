"""The transport interface the outbox relay and the consumers are written against."""

from __future__ import annotations

from collections.abc import Sequence
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


class PublishError(Exception):
    """The bus did not acknowledge a message; nothing can be assumed about delivery."""


class PublisherTransport(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        """Publish in order; return once every message is acknowledged, raise PublishError
        otherwise (some may have been delivered: at-least-once)."""
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
