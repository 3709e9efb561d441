"""Keep the store replica from ``identity.store.*`` events, newest version wins: bindings
check that a store is the caller's merchant's, receipts print its name."""

from __future__ import annotations

from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import EventEnvelope
from contracts.events.identity import StoreCreated, StoreUpdated
from device_gateway.models import Store
from servicekit.consumer import HandlerRegistry

handlers = HandlerRegistry()


async def upsert_store(session: AsyncSession, store: StoreCreated | StoreUpdated) -> None:
    stmt = pg.insert(Store).values(
        store_id=store.store_id,
        merchant_id=store.merchant_id,
        name=store.name,
        version=store.version,
    )
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=[Store.store_id],
            set_={
                "merchant_id": stmt.excluded.merchant_id,
                "name": stmt.excluded.name,
                "version": stmt.excluded.version,
            },
            where=Store.version < stmt.excluded.version,
        )
    )


@handlers.on("identity.store.created")
async def store_created(session: AsyncSession, envelope: EventEnvelope) -> None:
    await upsert_store(session, StoreCreated.model_validate(envelope.payload))


@handlers.on("identity.store.updated")
async def store_updated(session: AsyncSession, envelope: EventEnvelope) -> None:
    await upsert_store(session, StoreUpdated.model_validate(envelope.payload))
