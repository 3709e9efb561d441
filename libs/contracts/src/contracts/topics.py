"""The Kafka topic registry: every topic a Countertop service produces to, and who owns it.

Naming rules:

* domain events go to ``<service>.<aggregate>`` (``orders.order``), keyed by aggregate id, and an
  event type is ``<service>.<aggregate>.<event>`` (``orders.order.placed``), so the topic of an
  event follows from its type;
* saga commands go to ``<service>.commands``; saga replies to ``identity.saga-replies``, where the
  coordinator runs;
* a consumer's poison messages go to ``<topic>.dlq``;
* what the platform itself reports to operators (an outbox row parked, ...) goes to
  ``platform.alerts``, whatever the service: every ``platform.*`` event type is an alert.

Names are lower case: letters, digits, ``-`` and ``_`` within a segment, ``.`` between segments.
A topic is added here, in one place, before any service produces to it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

SERVICES: tuple[str, ...] = (
    "identity",
    "orders",
    "inventory",
    "members",
    "payments",
    "device-gateway",
)
"""Service names as they appear in topic and event-type names."""

TOPIC_PREFIXES: Mapping[str, str] = MappingProxyType({"device-gateway": "devices"})
"""Services whose topics and event types are not named after the service itself: the device
gateway publishes the ``devices.*`` family (``devices.device``, ``devices.print_job``...)."""


def topic_prefix(service: str) -> str:
    """The first segment of ``service``'s topics and event types."""
    return TOPIC_PREFIXES.get(service, service)


PLATFORM = "platform"
"""The owner of what servicekit itself publishes in every service (not a service)."""

DLQ_SUFFIX = ".dlq"
SAGA_REPLIES_TOPIC = "identity.saga-replies"
ALERTS_TOPIC = "platform.alerts"

TopicKind = Literal["events", "commands", "replies", "alerts"]

_SEGMENT = r"[a-z][a-z0-9_-]*"
_TOPIC_RE = re.compile(rf"^{_SEGMENT}(\.{_SEGMENT})+$")
_EVENT_TYPE_RE = re.compile(rf"^({_SEGMENT})\.({_SEGMENT})\.({_SEGMENT})$")


class UnknownTopic(LookupError):
    """A topic name, or the topic an event type maps to, is not in the registry."""


def validate_topic_name(name: str) -> str:
    """Return ``name`` if it is a well-formed topic name, else raise ``ValueError``."""
    if not _TOPIC_RE.match(name):
        raise ValueError(
            f"invalid topic name {name!r}: expected lower-case dot-separated segments "
            "of letters, digits, '-' and '_', at least two segments"
        )
    return name


def split_event_type(event_type: str) -> tuple[str, str, str]:
    """``"orders.order.placed"`` -> ``("orders", "order", "placed")``.

    Raises ``ValueError`` if ``event_type`` is not ``<service>.<aggregate>.<event>``.
    """
    match = _EVENT_TYPE_RE.match(event_type)
    if match is None:
        raise ValueError(
            f"invalid event type {event_type!r}: expected <service>.<aggregate>.<event>, lower case"
        )
    return match.group(1), match.group(2), match.group(3)


@dataclass(frozen=True, slots=True)
class Topic:
    """A registered topic. ``owner`` is the only service that produces to it, except for
    ``<service>.commands``, which the saga coordinator writes and ``owner`` consumes."""

    name: str
    owner: str
    description: str
    kind: TopicKind = "events"

    def __post_init__(self) -> None:
        validate_topic_name(self.name)
        if self.owner not in (*SERVICES, PLATFORM):
            raise ValueError(f"topic {self.name!r}: unknown owner service {self.owner!r}")
        if not self.name.startswith(topic_prefix(self.owner) + "."):
            raise ValueError(
                f"topic {self.name!r} must start with {topic_prefix(self.owner)!r}, "
                f"the prefix of its owner {self.owner!r}"
            )
        if self.name.endswith(DLQ_SUFFIX):
            raise ValueError(f"topic {self.name!r}: dead-letter topics are derived, not registered")
        if not self.description.strip():
            raise ValueError(f"topic {self.name!r} needs a description")

    @property
    def dlq(self) -> str:
        return self.name + DLQ_SUFFIX


def _metric_key(name: str) -> str:
    # Kafka turns '.' into '_' in metric names, so "a.b_c" and "a_b.c" would share metrics;
    # Kafka itself warns about such pairs, we refuse them.
    return name.replace(".", "_")


def _register(registry: dict[str, Topic], topic: Topic) -> None:
    if topic.name in registry:
        raise ValueError(f"topic {topic.name!r} is registered twice")
    clash = next((t for t in registry if _metric_key(t) == _metric_key(topic.name)), None)
    if clash is not None:
        raise ValueError(f"topic {topic.name!r} collides with {clash!r} in Kafka metric names")
    registry[topic.name] = topic


_topics: dict[str, Topic] = {}

for _topic in (
    Topic(
        "identity.merchant", "identity", "Merchants (legal entities): created, changed, archived."
    ),
    Topic("identity.store", "identity", "Stores: opened, changed, locked during migration, moved."),
    Topic("identity.staff", "identity", "Staff accounts, their roles and store assignments."),
    Topic(
        SAGA_REPLIES_TOPIC,
        "identity",
        "Replies from every service to saga commands, correlated by saga id.",
        kind="replies",
    ),
    Topic("orders.order", "orders", "Orders from every channel through their state machine."),
    Topic("orders.kitchen_ticket", "orders", "Kitchen tickets: sent, started, bumped, recalled."),
    Topic(
        "orders.coupon",
        "orders",
        "Coupon redemptions at checkout: reserved by an order, redeemed when paid, released.",
    ),
    Topic(
        "inventory.product", "inventory", "Catalog products and prices as distributed to stores."
    ),
    Topic("inventory.stock", "inventory", "Stock ledger movements per store and product."),
    Topic("members.member", "members", "Members, their tags, levels and stored-value accounts."),
    Topic("members.points", "members", "Points ledger: awarded, redeemed, expired, reversed."),
    Topic("members.coupon", "members", "Coupons issued to members and voided."),
    Topic(
        "members.stored_value",
        "members",
        "Stored-value accounts: recharges credited, payments debited or refused, refunds.",
    ),
    Topic("payments.payment", "payments", "Payments and refunds across every method."),
    Topic(
        "devices.device",
        "device-gateway",
        "Devices: bound, unbound, rebound to another store, online, offline.",
    ),
    Topic("devices.print_job", "device-gateway", "Print jobs that failed after retries."),
    Topic("devices.alert", "device-gateway", "Device alerts: paper out, offline, failed."),
    Topic(
        ALERTS_TOPIC,
        PLATFORM,
        "Operator alerts from the platform code of every service (e.g. an outbox row parked).",
        kind="alerts",
    ),
    *(
        Topic(
            f"{topic_prefix(service)}.commands",
            service,
            f"Saga commands addressed to {service}, from the saga coordinator.",
            kind="commands",
        )
        for service in SERVICES
    ),
):
    _register(_topics, _topic)

TOPICS: Mapping[str, Topic] = MappingProxyType(_topics)
"""Every registered topic by name (read-only)."""


def all_topics() -> list[Topic]:
    """Every registered topic, sorted by name (dead-letter topics not included: see ``dlq``)."""
    return [TOPICS[name] for name in sorted(TOPICS)]


def get_topic(name: str) -> Topic:
    try:
        return TOPICS[name]
    except KeyError:
        raise UnknownTopic(f"topic {name!r} is not registered in contracts.topics") from None


def topic_for_event_type(event_type: str) -> str:
    """The topic an event type is published to: ``"orders.order.placed"`` -> ``"orders.order"``.

    Raises ``ValueError`` for a malformed type and :class:`UnknownTopic` when the topic is not
    registered, so that a typo fails when the event is written, not silently on the bus.
    """
    service, aggregate, _ = split_event_type(event_type)
    if service == PLATFORM:
        return ALERTS_TOPIC
    topic = get_topic(f"{service}.{aggregate}")
    if topic.kind != "events":
        raise UnknownTopic(
            f"event type {event_type!r} maps to {topic.name!r}, a {topic.kind} topic"
        )
    return topic.name


def commands_topic(service: str) -> str:
    """Where saga commands for ``service`` go: ``"payments"`` -> ``"payments.commands"``."""
    if service not in SERVICES:
        raise ValueError(f"unknown service {service!r}")
    return f"{topic_prefix(service)}.commands"


def dlq_topic(topic: str) -> str:
    """The dead-letter topic of ``topic``: ``"orders.order"`` -> ``"orders.order.dlq"``.

    Only the name is checked, not the registry, so consumers of any well-formed topic get a
    dead-letter topic; a dead-letter topic has none of its own.
    """
    validate_topic_name(topic)
    if topic.endswith(DLQ_SUFFIX):
        raise ValueError(f"{topic!r} is already a dead-letter topic")
    return topic + DLQ_SUFFIX
