"""The topic registry: names, ownership, event-type mapping and dead-letter topics."""

from __future__ import annotations

import pytest

from contracts.topics import (
    SAGA_REPLIES_TOPIC,
    SERVICES,
    TOPICS,
    Topic,
    UnknownTopic,
    _register,
    all_topics,
    commands_topic,
    dlq_topic,
    get_topic,
    split_event_type,
    topic_for_event_type,
    topic_prefix,
    validate_topic_name,
)

EXPECTED_EVENT_TOPICS = {
    "identity.merchant": "identity",
    "identity.store": "identity",
    "identity.staff": "identity",
    "orders.order": "orders",
    "orders.kitchen_ticket": "orders",
    "orders.coupon": "orders",
    "inventory.product": "inventory",
    "inventory.stock": "inventory",
    "members.member": "members",
    "members.points": "members",
    "members.coupon": "members",
    "members.stored_value": "members",
    "payments.payment": "payments",
    "devices.device": "device-gateway",
    "devices.print_job": "device-gateway",
    "devices.alert": "device-gateway",
}


def test_registered_topics() -> None:
    expected = {
        **{name: (owner, "events") for name, owner in EXPECTED_EVENT_TOPICS.items()},
        **{f"{topic_prefix(s)}.commands": (s, "commands") for s in SERVICES},
        SAGA_REPLIES_TOPIC: ("identity", "replies"),
        "platform.alerts": ("platform", "alerts"),
    }
    assert {t.name: (t.owner, t.kind) for t in all_topics()} == expected
    assert [t.name for t in all_topics()] == sorted(expected)
    assert SAGA_REPLIES_TOPIC == "identity.saga-replies"
    assert set(SERVICES) == {
        "identity",
        "orders",
        "inventory",
        "members",
        "payments",
        "device-gateway",
    }


def test_registry_is_read_only() -> None:
    with pytest.raises(TypeError):
        TOPICS["orders.evil"] = Topic("orders.evil", "orders", "x")  # type: ignore[index]


@pytest.mark.parametrize(
    ("event_type", "topic"),
    [
        ("orders.order.placed", "orders.order"),
        ("orders.kitchen_ticket.bumped", "orders.kitchen_ticket"),
        ("devices.device.bound", "devices.device"),
        ("payments.payment.refund_succeeded", "payments.payment"),
    ],
)
def test_topic_for_event_type(event_type: str, topic: str) -> None:
    assert topic_for_event_type(event_type) == topic


def test_unregistered_topic_is_refused() -> None:
    with pytest.raises(UnknownTopic, match=r"orders\.cart"):
        topic_for_event_type("orders.cart.created")
    with pytest.raises(UnknownTopic):
        get_topic("nobody.nothing")


def test_event_types_never_map_to_command_or_reply_topics() -> None:
    with pytest.raises(UnknownTopic, match="commands topic"):
        topic_for_event_type("payments.commands.bind_account")
    with pytest.raises(UnknownTopic, match="replies topic"):
        topic_for_event_type("identity.saga-replies.done")


@pytest.mark.parametrize(
    "event_type",
    [
        "orders.order",
        "orders.order.placed.v2",
        "Orders.order.placed",
        "orders..placed",
        "orders.order.Placed",
        "orders.order.placed ",
        "1orders.order.placed",
        "",
    ],
)
def test_malformed_event_types(event_type: str) -> None:
    with pytest.raises(ValueError, match="invalid event type"):
        split_event_type(event_type)


def test_split_event_type() -> None:
    assert split_event_type("devices.device.bound") == ("devices", "device", "bound")
    assert topic_prefix("device-gateway") == "devices"
    assert topic_prefix("orders") == "orders"


@pytest.mark.parametrize(
    "name",
    [
        "orders",
        "Orders.order",
        "orders.",
        ".orders",
        "orders order",
        "orders/order",
        "orders.Order",
        "orders.-x",
    ],
)
def test_invalid_topic_names(name: str) -> None:
    with pytest.raises(ValueError, match="invalid topic name"):
        validate_topic_name(name)


def test_dlq_topic() -> None:
    assert dlq_topic("orders.order") == "orders.order.dlq"
    assert dlq_topic("payments.commands") == "payments.commands.dlq"
    assert get_topic("orders.order").dlq == "orders.order.dlq"
    with pytest.raises(ValueError, match="already a dead-letter"):
        dlq_topic("orders.order.dlq")
    with pytest.raises(ValueError, match="invalid topic name"):
        dlq_topic("Orders")


def test_commands_topic() -> None:
    assert commands_topic("device-gateway") == "devices.commands"
    assert commands_topic("payments") in TOPICS
    with pytest.raises(ValueError, match="unknown service"):
        commands_topic("billing")


@pytest.mark.parametrize(
    ("name", "owner", "description", "message"),
    [
        ("orders.order", "billing", "x", "unknown owner"),
        ("orders.order", "payments", "x", "must start"),
        ("orders.order.dlq", "orders", "x", "dead-letter"),
        ("orders.order", "orders", " ", "description"),
        ("orders", "orders", "x", "invalid topic name"),
    ],
)
def test_topic_validation(name: str, owner: str, description: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Topic(name, owner, description)


def test_registration_refuses_duplicates_and_metric_collisions() -> None:
    registry: dict[str, Topic] = {}
    _register(registry, Topic("orders.kitchen_ticket", "orders", "tickets"))
    with pytest.raises(ValueError, match="registered twice"):
        _register(registry, Topic("orders.kitchen_ticket", "orders", "again"))
    with pytest.raises(ValueError, match="metric names"):
        _register(registry, Topic("orders.kitchen.ticket", "orders", "collides"))
    _register(registry, Topic("orders.kitchen-ticket", "orders", "hyphen is distinct"))
    assert sorted(registry) == ["orders.kitchen-ticket", "orders.kitchen_ticket"]
