"""The event envelope every domain event travels in, on the bus and in the outbox."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from contracts.ids import new_id


def utcnow() -> datetime:
    return datetime.now(UTC)


class EventEnvelope(BaseModel):
    """One domain event. ``payload`` is the event body, validated against the schema registered
    for ``(type, version)``; everything else is routing and tracing metadata."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: uuid.UUID = Field(default_factory=new_id)
    type: str = Field(min_length=1, max_length=200, description="e.g. orders.order.placed")
    version: int = Field(default=1, ge=1)
    occurred_at: AwareDatetime = Field(default_factory=utcnow)
    producer: str = Field(min_length=1, max_length=100, description="the service that wrote it")
    merchant_id: uuid.UUID | None = None
    store_id: uuid.UUID | None = None
    aggregate_type: str = Field(min_length=1, max_length=100)
    aggregate_id: str = Field(min_length=1, max_length=200)
    correlation_id: uuid.UUID | None = None
    causation_id: uuid.UUID | None = None
    payload: dict[str, Any] = Field(default_factory=dict)

    def caused(self, **fields: Any) -> dict[str, Any]:
        """Envelope fields for an event that this one caused: same correlation, causation = this."""
        return {
            "correlation_id": self.correlation_id or self.event_id,
            "causation_id": self.event_id,
            "merchant_id": self.merchant_id,
            "store_id": self.store_id,
            **fields,
        }
