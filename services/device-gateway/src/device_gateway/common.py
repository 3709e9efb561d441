"""Small helpers shared by the gateway's domains."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import EventEnvelope
from contracts.registry import make_envelope
from servicekit.outbox import add_event

PRODUCER = "device-gateway"


def utcnow() -> datetime:
    return datetime.now(UTC)


async def emit(
    session: AsyncSession,
    payload: BaseModel,
    *,
    merchant_id: uuid.UUID,
    store_id: uuid.UUID | None,
    aggregate_id: uuid.UUID,
    cause: EventEnvelope | None = None,
) -> None:
    """Write a gateway event to the outbox in the caller's transaction."""
    envelope = make_envelope(
        payload,
        producer=PRODUCER,
        aggregate_id=aggregate_id,
        merchant_id=merchant_id,
        store_id=store_id,
        correlation_id=(cause.correlation_id or cause.event_id) if cause else None,
        causation_id=cause.event_id if cause else None,
    )
    await add_event(session, envelope)
