"""The event-schema registry: registration rules, envelopes out, payloads back in."""

from __future__ import annotations

import importlib
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

import contracts.registry as registry_module
from contracts.envelope import EventEnvelope
from contracts.ids import new_id
from contracts.money import Money
from contracts.registry import (
    DuplicateEvent,
    EventPayload,
    EventRegistry,
    UnknownEventType,
    event,
    make_envelope,
    payload_model,
    registered_events,
    validate_payload,
)


@pytest.fixture
def registry() -> EventRegistry:
    return EventRegistry()


@pytest.fixture
def default(monkeypatch: pytest.MonkeyPatch) -> EventRegistry:
    """A fresh default registry, so the module-level functions can be exercised in isolation."""
    fresh = EventRegistry()
    monkeypatch.setattr(registry_module, "default_registry", fresh)
    return fresh


def declare_order_placed(registry: EventRegistry) -> type[EventPayload]:
    @registry.event(type="orders.order.placed", version=1)
    class OrderPlaced(EventPayload):
        order_id: uuid.UUID
        total: Money
        channel: Literal["pos", "mini_program", "delivery"]

    return OrderPlaced


def test_register_and_look_up(registry: EventRegistry) -> None:
    model = declare_order_placed(registry)

    @registry.event(type="orders.order.placed", version=2)
    class OrderPlacedV2(EventPayload):
        order_id: uuid.UUID

    assert registry.payload_model("orders.order.placed", 1) is model
    assert registry.payload_model("orders.order.placed", 2) is OrderPlacedV2
    specs = registry.registered_events()
    assert [(s.event_type, s.version) for s in specs] == [
        ("orders.order.placed", 1),
        ("orders.order.placed", 2),
    ]
    assert specs[0].service == "orders"
    assert specs[0].aggregate_type == "order"
    assert registry.spec_for(model).key == ("orders.order.placed", 1)


def test_unknown_type_or_version(registry: EventRegistry) -> None:
    declare_order_placed(registry)
    with pytest.raises(UnknownEventType, match="version 3"):
        registry.payload_model("orders.order.placed", 3)
    with pytest.raises(UnknownEventType):
        registry.payload_model("orders.order.voided", 1)
    assert issubclass(UnknownEventType, LookupError)


def test_duplicate_registration_is_refused(registry: EventRegistry) -> None:
    declare_order_placed(registry)
    with pytest.raises(DuplicateEvent, match="already registered"):

        @registry.event(type="orders.order.placed", version=1)
        class Impostor(EventPayload):
            order_id: uuid.UUID


def test_one_model_cannot_be_two_events(registry: EventRegistry) -> None:
    model = declare_order_placed(registry)
    with pytest.raises(DuplicateEvent, match="already registered as"):
        registry.event(type="orders.order.paid", version=1)(model)


def test_registering_the_same_model_again_is_harmless(registry: EventRegistry) -> None:
    model = declare_order_placed(registry)
    registry.event(type="orders.order.placed", version=1)(model)
    assert len(registry.registered_events()) == 1


def test_reimporting_a_module_replaces_its_models(
    registry: EventRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = tmp_path / "reloaded_events.py"
    module.write_text(
        "from contracts.registry import EventPayload\n"
        "from test_registry_target import registry\n\n"
        "@registry.event(type='inventory.stock.adjusted', version=1)\n"
        "class StockAdjusted(EventPayload):\n"
        "    quantity: int\n"
    )
    target = type(sys)("test_registry_target")
    target.registry = registry  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "test_registry_target", target)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "reloaded_events", raising=False)
    first = importlib.import_module("reloaded_events").StockAdjusted
    second = importlib.reload(sys.modules["reloaded_events"]).StockAdjusted
    assert first is not second
    assert registry.payload_model("inventory.stock.adjusted", 1) is second
    monkeypatch.delitem(sys.modules, "reloaded_events")


@pytest.mark.parametrize("event_type", ["orders.placed", "Orders.order.placed", "orders.order."])
def test_malformed_types_are_refused(registry: EventRegistry, event_type: str) -> None:
    with pytest.raises(ValueError, match="invalid event type"):
        registry.event(type=event_type)


@pytest.mark.parametrize("version", [0, -1, True, 1.0])
def test_bad_versions_are_refused(registry: EventRegistry, version: object) -> None:
    with pytest.raises(ValueError, match="version"):
        registry.event(type="orders.order.placed", version=version)  # type: ignore[arg-type]


def test_models_that_forbid_extra_fields_are_refused(registry: EventRegistry) -> None:
    with pytest.raises(TypeError, match="must not forbid extra fields"):

        @registry.event(type="orders.order.placed")
        class Strict(BaseModel):
            model_config = ConfigDict(extra="forbid")
            order_id: uuid.UUID


def test_only_pydantic_models_can_register(registry: EventRegistry) -> None:
    class NotAModel:
        """A plain class, not a pydantic model."""

    with pytest.raises(TypeError, match="pydantic model"):
        registry.event(type="orders.order.placed")(NotAModel)  # type: ignore[type-var]


def test_make_envelope_fills_metadata_from_the_registration(registry: EventRegistry) -> None:
    model = declare_order_placed(registry)
    order_id, merchant, store, correlation, cause = (new_id() for _ in range(5))
    when = datetime(2025, 3, 1, 4, 5, 6, tzinfo=UTC)
    payload = model.model_validate(
        {"order_id": order_id, "total": {"amount": 1250, "currency": "CNY"}, "channel": "pos"}
    )
    envelope = registry.make_envelope(
        payload,
        producer="orders",
        aggregate_id=order_id,
        merchant_id=merchant,
        store_id=store,
        correlation_id=correlation,
        causation_id=cause,
        occurred_at=when,
    )
    assert envelope.type == "orders.order.placed"
    assert envelope.version == 1
    assert envelope.aggregate_type == "order"
    assert envelope.aggregate_id == str(order_id)
    assert (envelope.merchant_id, envelope.store_id) == (merchant, store)
    assert (envelope.correlation_id, envelope.causation_id) == (correlation, cause)
    assert envelope.occurred_at == when
    assert envelope.producer == "orders"
    # The payload is held in its JSON form, as it travels.
    assert envelope.payload == {
        "order_id": str(order_id),
        "total": {"amount": 1250, "currency": "CNY"},
        "channel": "pos",
    }


def test_envelope_round_trip_through_the_wire(registry: EventRegistry) -> None:
    model = declare_order_placed(registry)
    payload = model.model_validate(
        {"order_id": new_id(), "total": {"amount": 99, "currency": "JPY"}, "channel": "delivery"}
    )
    envelope = registry.make_envelope(payload, producer="orders", aggregate_id="A-1")
    received = EventEnvelope.model_validate_json(envelope.model_dump_json())
    assert registry.validate_payload(received) == payload
    assert envelope.occurred_at.tzinfo is not None


def test_make_envelope_refuses_unregistered_payloads(registry: EventRegistry) -> None:
    class Loose(EventPayload):
        x: int

    with pytest.raises(LookupError, match="not a registered event payload"):
        registry.make_envelope(Loose(x=1), producer="orders", aggregate_id="1")


def test_make_envelope_refuses_naive_occurred_at(registry: EventRegistry) -> None:
    model = declare_order_placed(registry)
    payload = model.model_validate(
        {"order_id": new_id(), "total": {"amount": 1, "currency": "CNY"}, "channel": "pos"}
    )
    with pytest.raises(ValidationError):
        registry.make_envelope(
            payload, producer="orders", aggregate_id="1", occurred_at=datetime(2025, 1, 1)
        )


def test_consumers_ignore_fields_they_do_not_know(registry: EventRegistry) -> None:
    model = declare_order_placed(registry)
    envelope = EventEnvelope(
        type="orders.order.placed",
        producer="orders",
        aggregate_type="order",
        aggregate_id="1",
        payload={
            "order_id": str(new_id()),
            "total": {"amount": 1, "currency": "CNY"},
            "channel": "pos",
            "added_in_a_later_release": {"anything": True},
        },
    )
    payload = registry.validate_payload(envelope)
    assert isinstance(payload, model)
    assert "added_in_a_later_release" not in payload.model_dump()


def test_validate_payload_errors(registry: EventRegistry) -> None:
    declare_order_placed(registry)
    fields = {"producer": "orders", "aggregate_type": "order", "aggregate_id": "1"}
    bad = EventEnvelope(type="orders.order.placed", payload={"order_id": "nope"}, **fields)
    with pytest.raises(ValidationError):
        registry.validate_payload(bad)
    unknown = EventEnvelope(type="orders.order.placed", version=9, payload={}, **fields)
    with pytest.raises(UnknownEventType):
        registry.validate_payload(unknown)


def test_module_level_functions_use_the_default_registry(default: EventRegistry) -> None:
    @event(type="members.points.awarded", version=1)
    class PointsAwarded(EventPayload):
        member_id: uuid.UUID
        points: int

    assert payload_model("members.points.awarded", 1) is PointsAwarded
    assert [s.key for s in registered_events()] == [("members.points.awarded", 1)]
    payload = PointsAwarded(member_id=new_id(), points=30)
    envelope = make_envelope(payload, producer="members", aggregate_id=payload.member_id)
    assert envelope.aggregate_type == "points"
    assert validate_payload(envelope) == payload
    assert default.spec_for(PointsAwarded).event_type == "members.points.awarded"


def test_payloads_are_immutable(registry: EventRegistry) -> None:
    model = declare_order_placed(registry)
    payload = model.model_validate(
        {"order_id": new_id(), "total": {"amount": 1, "currency": "CNY"}, "channel": "pos"}
    )
    with pytest.raises(ValidationError):
        payload.channel = "delivery"  # type: ignore[attr-defined]
