"""The event bus: Kafka in every deployment, an in-memory bus with the same interface for
fast unit tests."""

from servicekit.bus.base import (
    BusMessage,
    ConsumerTransport,
    OutgoingMessage,
    PublishError,
    PublisherTransport,
    TopicPartition,
)

__all__ = [
    "BusMessage",
    "ConsumerTransport",
    "OutgoingMessage",
    "PublishError",
    "PublisherTransport",
    "TopicPartition",
]
