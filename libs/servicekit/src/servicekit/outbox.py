"""Writing events in the business transaction (the transactional outbox).

``add_event`` inserts the event into the service's ``outbox`` table with the same session that
changes the business rows, so the event exists if and only if the change committed. The relay
(``servicekit.relay``) publishes it afterwards.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import EventEnvelope
from contracts.topics import topic_for_event_type

outbox_table = sa.table(
    "outbox",
    sa.column("id", pg.UUID(as_uuid=True)),
    sa.column("seq", sa.BigInteger),
    sa.column("aggregatetype", sa.Text),
    sa.column("aggregateid", sa.Text),
    sa.column("type", sa.Text),
    sa.column("topic", sa.Text),
    sa.column("payload", pg.JSONB),
    sa.column("headers", pg.JSONB),
    sa.column("lane", sa.SmallInteger),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("sent_at", sa.DateTime(timezone=True)),
    sa.column("attempts", sa.Integer),
    sa.column("last_error", sa.Text),
)


def _trace_headers() -> dict[str, str]:
    from servicekit.telemetry.tracing import outbox_headers

    return outbox_headers()


def outbox_row(
    event: EventEnvelope,
    *,
    topic: str | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The outbox row for an event: the whole envelope is the payload (the Kafka value).
    ``headers``: the trace context, when the caller already has it."""
    return {
        "id": event.event_id,
        "aggregatetype": event.aggregate_type,
        "aggregateid": event.aggregate_id,
        "type": event.type,
        "topic": topic or topic_for_event_type(event.type),
        "payload": event.model_dump(mode="json"),
        "headers": _trace_headers() if headers is None else headers,
    }


async def add_event(
    session: AsyncSession, event: EventEnvelope, *, topic: str | None = None
) -> None:
    """Record ``event`` for publication when the session's transaction commits."""
    await session.execute(sa.insert(outbox_table).values(outbox_row(event, topic=topic)))


#: RETURNING makes SQLAlchemy send many rows as a few multi-row ``INSERT ... VALUES``
#: (insertmanyvalues) rather than one execution per row: far fewer statements for PostgreSQL
#: (and one firing of the outbox's wake-up trigger per statement, not per row).
_INSERT_MANY = sa.insert(outbox_table).returning(outbox_table.c.seq)


async def add_events(session: AsyncSession, events: list[EventEnvelope]) -> None:
    """Record several events with one statement, in the given order."""
    if events:
        # One span, one trace context: injecting it once per row costs more than the row.
        headers = _trace_headers()
        rows = [outbox_row(e, headers=dict(headers)) for e in events]
        await session.execute(_INSERT_MANY, rows)
