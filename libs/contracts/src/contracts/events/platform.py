"""Events the platform code (servicekit) publishes in every service, for operators: they go to
``platform.alerts`` and no business handler depends on them."""

from __future__ import annotations

from uuid import UUID

from pydantic import Field

from contracts.registry import EventPayload, event


@event(type="platform.outbox.row_parked", version=1)
class OutboxRowParked(EventPayload):
    """An outbox row failed to publish on its own too often (or the broker refused it, e.g. it
    is over the producer's size limit) and was parked: the relay skips it until an operator
    re-arms it. The event it holds has not reached its consumers."""

    service: str
    outbox_id: UUID = Field(description="the parked row's id, which is its event's id")
    event_type: str
    topic: str
    aggregate_id: str
    attempts: int = Field(ge=0)
    size_bytes: int = Field(ge=0, description="the size of the event as published")
    error: str = Field(max_length=2000)
