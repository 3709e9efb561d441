"""Keep the store replica from ``identity.store.*`` events, newest version wins.

Rows are keyed by ``(merchant_id, store_id)``; an event whose payload names another merchant
than its envelope is refused, so one tenant's event can never open or lock another's store.
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import EventEnvelope
from contracts.events.identity import StoreCreated, StoreStatusChanged, StoreUpdated
from orders.catalog.handlers import merchant_of
from orders.models import Store
from servicekit.consumer import HandlerRegistry, PoisonMessage

handlers = HandlerRegistry()


async def _upsert(
    session: AsyncSession,
    envelope: EventEnvelope,
    store_id: uuid.UUID,
    merchant_id: uuid.UUID,
    status: str,
    version: int,
    *,
    code: str | None = None,
    timezone: str | None = None,
) -> None:
    if merchant_of(envelope) != merchant_id:
        raise PoisonMessage(
            f"{envelope.type} {envelope.event_id}: store {store_id} of merchant {merchant_id} "
            f"announced under merchant {envelope.merchant_id}"
        )
    stmt = pg.insert(Store).values(
        merchant_id=merchant_id,
        store_id=store_id,
        status=status,
        version=version,
        code=code,
        timezone=timezone,
    )
    # A status change carries no code or timezone: it keeps the ones the replica holds.
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=[Store.merchant_id, Store.store_id],
            set_={
                "status": stmt.excluded.status,
                "version": stmt.excluded.version,
                "code": sa.func.coalesce(stmt.excluded.code, Store.code),
                "timezone": sa.func.coalesce(stmt.excluded.timezone, Store.timezone),
            },
            where=Store.version < stmt.excluded.version,
        )
    )


@handlers.on("identity.store.created")
async def store_created(session: AsyncSession, envelope: EventEnvelope) -> None:
    store = StoreCreated.model_validate(envelope.payload)
    await _upsert(
        session,
        envelope,
        store.store_id,
        store.merchant_id,
        store.status,
        store.version,
        code=store.code,
        timezone=store.timezone,
    )


@handlers.on("identity.store.updated")
async def store_updated(session: AsyncSession, envelope: EventEnvelope) -> None:
    store = StoreUpdated.model_validate(envelope.payload)
    await _upsert(
        session,
        envelope,
        store.store_id,
        store.merchant_id,
        store.status,
        store.version,
        code=store.code,
        timezone=store.timezone,
    )


@handlers.on("identity.store.status_changed")
async def store_status_changed(session: AsyncSession, envelope: EventEnvelope) -> None:
    change = StoreStatusChanged.model_validate(envelope.payload)
    await _upsert(
        session, envelope, change.store_id, change.merchant_id, change.status, change.version
    )
