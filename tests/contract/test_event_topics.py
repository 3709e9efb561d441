"""Every published event type is routed to a registered events topic of the service that owns it."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import pytest

from contracts.registry import EventPayload, EventRegistry, EventSpec
from contracts.snapshot import published_events
from contracts.topics import UnknownTopic, get_topic, topic_for_event_type


def routing_problems(specs: Sequence[EventSpec]) -> list[str]:
    problems = []
    for spec in specs:
        # A registered topic is named after its owner, so the producing service (the type's
        # first segment) is the topic's owner whenever the lookup succeeds.
        try:
            get_topic(topic_for_event_type(spec.event_type))
        except (UnknownTopic, ValueError) as exc:
            problems.append(f"{spec.event_type} v{spec.version}: {exc}")
    return problems


def test_published_events_route_to_registered_topics() -> None:
    problems = routing_problems(published_events())
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("event_type", "problem"),
    [
        ("orders.cart.created", "orders.cart"),
        ("payments.commands.bind", "commands topic"),
        ("identity.saga-replies.done", "replies topic"),
    ],
)
def test_unroutable_events_are_reported(event_type: str, problem: str) -> None:
    registry = EventRegistry()

    @registry.event(type=event_type, version=1)
    class Payload(EventPayload):
        id: uuid.UUID

    (reported,) = routing_problems(registry.registered_events())
    assert problem in reported


def test_routable_events_are_not_reported() -> None:
    registry = EventRegistry()

    @registry.event(type="devices.device.bound", version=1)
    class DeviceBound(EventPayload):
        device_id: uuid.UUID

    assert routing_problems(registry.registered_events()) == []
