"""The kitchen display feed: tickets per store and station with their state, and an
append-only feed of changes whose sequence number is the SSE event id a display resumes from.

States: ``new`` → ``in_progress`` → ``done``; ``done`` → ``recalled`` (back on the screen)
→ ``in_progress`` → ``done``.
"""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.events.orders import KitchenTicketCreated
from device_gateway.common import utcnow
from device_gateway.models import KitchenFeedEntry, KitchenTicket
from device_gateway.printing.documents import order_number
from servicekit.auth import Principal, require_store_access
from servicekit.errors import IllegalState, NotFound, VersionMismatch

NEXT_STATE = {"new": "in_progress", "in_progress": "done", "recalled": "in_progress"}


def ticket_data(ticket: KitchenTicket) -> dict[str, Any]:
    return {
        "ticket_id": str(ticket.ticket_id),
        "order_id": str(ticket.order_id),
        "order_number": order_number(ticket.order_id),
        "station": ticket.station,
        "table": ticket.table,
        "lines": ticket.lines,
        "state": ticket.state,
        "version": ticket.version,
        "created_at": ticket.created_at.isoformat() if ticket.created_at else None,
        "updated_at": ticket.updated_at.isoformat() if ticket.updated_at else None,
    }


async def _append(session: AsyncSession, ticket: KitchenTicket) -> None:
    # One writer per store at a time until commit, so feed positions commit in order and a
    # display that saw position n never misses a smaller one committed later.
    await session.execute(
        sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtext(str(ticket.store_id))))
    )
    session.add(
        KitchenFeedEntry(
            merchant_id=ticket.merchant_id,
            store_id=ticket.store_id,
            station=ticket.station,
            ticket_id=ticket.ticket_id,
            state=ticket.state,
            data=ticket_data(ticket),
        )
    )


async def add_ticket(
    session: AsyncSession, merchant_id: uuid.UUID, ticket: KitchenTicketCreated
) -> bool:
    """Put a new ticket on its station's displays; False if it is there already."""
    now = utcnow()
    inserted = await session.execute(
        pg.insert(KitchenTicket)
        .values(
            merchant_id=merchant_id,
            ticket_id=ticket.ticket_id,
            store_id=ticket.store_id,
            order_id=ticket.order_id,
            station=ticket.station,
            table=ticket.table,
            lines=[line.model_dump(mode="json") for line in ticket.lines],
            state="new",
            version=1,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["merchant_id", "ticket_id"])
        .returning(KitchenTicket)
    )
    row = inserted.scalar_one_or_none()
    if row is None:
        return False
    await _append(session, row)
    return True


async def _visible(
    session: AsyncSession, principal: Principal, store_id: uuid.UUID, ticket_id: uuid.UUID
) -> KitchenTicket:
    require_store_access(principal, store_id)
    ticket = await session.get(
        KitchenTicket, (principal.merchant_id, ticket_id), with_for_update=True
    )
    if ticket is None or ticket.store_id != store_id:
        raise NotFound("Kitchen ticket not found.", code="ticket_not_found")
    return ticket


async def change(
    session: AsyncSession,
    principal: Principal,
    store_id: uuid.UUID,
    ticket_id: uuid.UUID,
    *,
    to: str | None,
    version: int | None,
) -> KitchenTicket:
    """Bump a ticket to its next state (or to ``to``: ``done`` straight away, ``recalled``)."""
    ticket = await _visible(session, principal, store_id, ticket_id)
    if version is not None and version != ticket.version:
        raise VersionMismatch(current_version=ticket.version)
    if to is None:
        target = NEXT_STATE.get(ticket.state)
        if target is None:
            raise IllegalState("ticket_already_done", "The ticket is done; recall it first.")
    elif to == "recalled":
        if ticket.state != "done":
            raise IllegalState("ticket_not_done", "Only a done ticket can be recalled.")
        target = to
    elif to == "done":
        if ticket.state == "done":
            return ticket
        target = to
    else:
        target = to
        if target == ticket.state:
            return ticket
    ticket.state = target
    ticket.version += 1
    ticket.updated_at = utcnow()
    await session.flush()
    await _append(session, ticket)
    return ticket


async def feed_after(
    session: AsyncSession,
    merchant_id: uuid.UUID,
    store_id: uuid.UUID,
    station: str | None,
    after: int,
    limit: int = 500,
) -> list[KitchenFeedEntry]:
    stmt = sa.select(KitchenFeedEntry).where(
        KitchenFeedEntry.merchant_id == merchant_id,
        KitchenFeedEntry.store_id == store_id,
        KitchenFeedEntry.seq > after,
    )
    if station is not None:
        stmt = stmt.where(KitchenFeedEntry.station == station)
    return list((await session.scalars(stmt.order_by(KitchenFeedEntry.seq).limit(limit))).all())


async def open_tickets(
    session: AsyncSession, merchant_id: uuid.UUID, store_id: uuid.UUID, station: str | None
) -> list[KitchenTicket]:
    stmt = sa.select(KitchenTicket).where(
        KitchenTicket.merchant_id == merchant_id,
        KitchenTicket.store_id == store_id,
        KitchenTicket.state != "done",
    )
    if station is not None:
        stmt = stmt.where(KitchenTicket.station == station)
    return list((await session.scalars(stmt.order_by(KitchenTicket.created_at))).all())
