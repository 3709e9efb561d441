"""Keep the store replica from ``identity.store.*`` events: the newest version wins, so a
replayed or late event never takes a store back to an older state. The replica keeps each
store's timezone (its business day) and region (store groups) as well."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import EventEnvelope
from contracts.events.identity import StoreCreated, StoreStatusChanged, StoreUpdated
from inventory.models import Store
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
    timezone: str | None = None,
    region_id: uuid.UUID | None = None,
    has_profile: bool = False,
) -> None:
    if envelope.merchant_id is not None and envelope.merchant_id != merchant_id:
        raise PoisonMessage(
            f"{envelope.type} {envelope.event_id} names merchant {merchant_id} "
            f"in a {envelope.merchant_id} envelope"
        )
    stmt = pg.insert(Store).values(
        merchant_id=merchant_id,
        store_id=store_id,
        status=status,
        version=version,
        timezone=timezone,
        region_id=region_id,
    )
    newer = Store.version < stmt.excluded.version
    # A status change carries no timezone or region: it keeps the ones known. A late
    # created event still fills a timezone nobody told us yet, without undoing newer state.
    set_: dict[str, object] = {
        "status": sa.case((newer, stmt.excluded.status), else_=Store.status),
        "version": sa.func.greatest(Store.version, stmt.excluded.version),
    }
    if has_profile:
        set_["timezone"] = sa.case(
            (sa.or_(newer, Store.timezone.is_(None)), stmt.excluded.timezone),
            else_=Store.timezone,
        )
        set_["region_id"] = sa.case(
            (sa.or_(newer, Store.timezone.is_(None)), stmt.excluded.region_id),
            else_=Store.region_id,
        )
    where = sa.or_(newer, Store.timezone.is_(None)) if has_profile else newer
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=[Store.merchant_id, Store.store_id], set_=set_, where=where
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
        timezone=store.timezone,
        region_id=store.region_id,
        has_profile=True,
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
        timezone=store.timezone,
        region_id=store.region_id,
        has_profile=True,
    )


@handlers.on("identity.store.status_changed")
async def store_status_changed(session: AsyncSession, envelope: EventEnvelope) -> None:
    change = StoreStatusChanged.model_validate(envelope.payload)
    await _upsert(
        session, envelope, change.store_id, change.merchant_id, change.status, change.version
    )
