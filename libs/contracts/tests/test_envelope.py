"""The event envelope: JSON round trip, aware timestamps, causation chains."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from contracts.envelope import EventEnvelope
from contracts.ids import new_id


def sample(**overrides: object) -> EventEnvelope:
    fields: dict[str, object] = {
        "type": "orders.order.placed",
        "producer": "orders",
        "aggregate_type": "order",
        "aggregate_id": str(new_id()),
        "merchant_id": new_id(),
        "store_id": new_id(),
        "payload": {"total": {"amount": 1250, "currency": "CNY"}, "lines": [{"sku": "A1"}]},
    }
    fields.update(overrides)
    return EventEnvelope.model_validate(fields)


def test_json_round_trip() -> None:
    envelope = sample(correlation_id=new_id(), causation_id=new_id())
    wire = envelope.model_dump_json()
    assert EventEnvelope.model_validate_json(wire) == envelope
    # And through a plain JSON document, as a consumer that is not Python would see it.
    assert EventEnvelope.model_validate(json.loads(wire)) == envelope


def test_defaults() -> None:
    envelope = sample()
    assert envelope.event_id.version == 7
    assert envelope.version == 1
    assert envelope.occurred_at.tzinfo is not None
    assert abs(datetime.now(UTC) - envelope.occurred_at) < timedelta(seconds=5)


def test_naive_datetime_is_refused() -> None:
    with pytest.raises(ValidationError) as caught:
        sample(occurred_at=datetime(2025, 1, 1, 12, 0))
    assert caught.value.errors()[0]["type"] == "timezone_aware"
    with pytest.raises(ValidationError):
        EventEnvelope.model_validate_json(
            sample().model_dump_json().replace("Z", "").replace("+00:00", "")
        )


def test_other_offsets_are_kept_as_the_same_instant() -> None:
    shanghai = timezone(timedelta(hours=8))
    envelope = sample(occurred_at=datetime(2025, 1, 1, 20, 0, tzinfo=shanghai))
    assert envelope.occurred_at == datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "overrides",
    [
        {"type": ""},
        {"version": 0},
        {"producer": ""},
        {"aggregate_id": ""},
        {"unknown": 1},
        {"event_id": "not-a-uuid"},
    ],
)
def test_invalid_envelopes(overrides: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        sample(**overrides)


def test_envelope_is_immutable() -> None:
    envelope = sample()
    with pytest.raises(ValidationError):
        envelope.type = "x.y.z"  # type: ignore[misc]


def test_caused_links_correlation_and_causation() -> None:
    first = sample()
    second = sample(**first.caused(type="payments.payment.succeeded"))
    assert second.correlation_id == first.event_id
    assert second.causation_id == first.event_id
    assert (second.merchant_id, second.store_id) == (first.merchant_id, first.store_id)
    third = sample(**second.caused())
    assert third.correlation_id == first.event_id
    assert third.causation_id == second.event_id


def test_uuid_fields_accept_strings_from_json() -> None:
    merchant = uuid.uuid4()
    envelope = sample(merchant_id=str(merchant))
    assert envelope.merchant_id == merchant
