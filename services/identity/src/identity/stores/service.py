"""Store logic: every read and write confined to the caller's merchant and stores.

``read_only`` is the semantic lock of a store whose legal entity is changing: only holders of
``settings:manage`` set or lift it, and other services learn it from
``identity.store.status_changed``.
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from identity import events
from identity.audit.service import record
from identity.common.concurrency import check_version
from identity.deps import Actor
from identity.regions.models import Region
from identity.stores.models import Store
from identity.stores.schemas import StoreCreate, StoreOut, StoreStatusChange, StoreUpdate
from servicekit.errors import (
    Conflict,
    FieldError,
    Forbidden,
    IllegalState,
    NotFound,
    ValidationFailed,
)
from servicekit.pagination import CursorParams, Page, paginate


async def _region_for(
    session: AsyncSession, actor: Actor | None, merchant_id: uuid.UUID, region_id: uuid.UUID
) -> Region:
    region = await session.get(Region, region_id)
    if region is None or region.merchant_id != merchant_id or region.status != "active":
        raise ValidationFailed([FieldError("region_id", "unknown_region", "No such region.")])
    if actor is not None and actor.store_ids is not None and region_id not in actor.region_ids:
        raise ValidationFailed([FieldError("region_id", "unknown_region", "No such region.")])
    return region


async def _code_taken(
    session: AsyncSession, merchant_id: uuid.UUID, code: str, but: uuid.UUID | None = None
) -> bool:
    stmt = sa.select(Store.id).where(Store.merchant_id == merchant_id, Store.code == code)
    if but is not None:
        stmt = stmt.where(Store.id != but)
    return (await session.scalar(stmt)) is not None


async def add_store(
    session: AsyncSession, merchant_id: uuid.UUID, body: StoreCreate, actor: Actor | None
) -> Store:
    """Insert a store and its event (sign-up calls this without an actor)."""
    if body.region_id is not None:
        await _region_for(session, actor, merchant_id, body.region_id)
    elif actor is not None and actor.store_ids is not None:
        # A regional manager's store must land in one of their regions, or they lose it.
        raise ValidationFailed(
            [FieldError("region_id", "missing", "Choose one of your regions for the store.")]
        )
    if await _code_taken(session, merchant_id, body.code):
        raise Conflict("This merchant already has a store with this code.", code="store_code_taken")
    store = Store(
        merchant_id=merchant_id,
        code=body.code,
        name=body.name,
        address=body.address,
        timezone=body.timezone,
        business_hours=[hours.model_dump() for hours in body.business_hours],
        region_id=body.region_id,
        status="active",
    )
    session.add(store)
    await session.flush()
    await events.store_created(session, store)
    return store


async def create(session: AsyncSession, actor: Actor, body: StoreCreate) -> StoreOut:
    actor.require("stores:manage")
    store = await add_store(session, actor.merchant_id, body, actor)
    await record(
        session,
        merchant_id=actor.merchant_id,
        action="store_created",
        actor_id=actor.id,
        detail={"store_id": str(store.id), "code": store.code},
    )
    return StoreOut.model_validate(store)


def _visible(actor: Actor) -> sa.Select[Store]:
    stmt = sa.select(Store).where(Store.merchant_id == actor.merchant_id)
    if actor.store_ids is not None:
        stmt = stmt.where(Store.id.in_(sorted(actor.store_ids)))
    return stmt


async def load(
    session: AsyncSession, actor: Actor, store_id: uuid.UUID, *, for_update: bool = False
) -> Store:
    """The store, or 404 when it is another merchant's or outside the caller's stores;
    ``for_update`` locks its row until commit (and re-reads it: never a stale cached copy)."""
    stmt = _visible(actor).where(Store.id == store_id)
    if for_update:
        stmt = stmt.with_for_update(key_share=True).execution_options(populate_existing=True)
    store = await session.scalar(stmt)
    if store is None:
        raise NotFound("Store not found.")
    return store


async def list_stores(
    session: AsyncSession,
    actor: Actor,
    params: CursorParams,
    *,
    status: str | None = None,
    region_id: uuid.UUID | None = None,
) -> Page[StoreOut]:
    stmt = _visible(actor)
    if status is not None:
        stmt = stmt.where(Store.status == status)
    if region_id is not None:
        stmt = stmt.where(Store.region_id == region_id)
    return await paginate(
        session, stmt, order_by=(Store.code, Store.id), params=params, map=StoreOut.model_validate
    )


async def get(session: AsyncSession, actor: Actor, store_id: uuid.UUID) -> StoreOut:
    return StoreOut.model_validate(await load(session, actor, store_id))


async def update(
    session: AsyncSession, actor: Actor, store_id: uuid.UUID, body: StoreUpdate
) -> StoreOut:
    store = await load(session, actor, store_id, for_update=True)
    actor.require("stores:manage")
    check_version(store.version, body.version)
    if store.status == "archived":
        raise IllegalState("store_archived", "An archived store cannot be changed.")
    changes = body.model_fields_set - {"version"}
    if "code" in changes and body.code is not None and body.code != store.code:
        if await _code_taken(session, store.merchant_id, body.code, but=store.id):
            raise Conflict(
                "This merchant already has a store with this code.", code="store_code_taken"
            )
        store.code = body.code
    if "name" in changes and body.name is not None:
        store.name = body.name
    if "address" in changes and body.address is not None:
        store.address = body.address
    if "timezone" in changes and body.timezone is not None:
        store.timezone = body.timezone
    if "business_hours" in changes and body.business_hours is not None:
        store.business_hours = [hours.model_dump() for hours in body.business_hours]
    if "region_id" in changes and body.region_id != store.region_id:
        if body.region_id is None:
            if actor.store_ids is not None:
                raise ValidationFailed(
                    [FieldError("region_id", "missing", "Choose one of your regions.")]
                )
        else:
            await _region_for(session, actor, store.merchant_id, body.region_id)
        store.region_id = body.region_id
    store.version += 1
    await session.flush()
    await events.store_updated(session, store)
    return StoreOut.model_validate(store)


async def change_status(
    session: AsyncSession, actor: Actor, store_id: uuid.UUID, body: StoreStatusChange
) -> StoreOut:
    store = await load(session, actor, store_id, for_update=True)
    actor.require("stores:manage")
    check_version(store.version, body.version)
    if body.status == store.status:
        return StoreOut.model_validate(store)
    if "read_only" in (body.status, store.status) and not actor.has("settings:manage"):
        raise Forbidden(
            "Locking or unlocking a store requires the 'settings:manage' permission.",
            missing_permission="settings:manage",
        )
    if store.status == "archived" and not actor.has("settings:manage"):
        raise Forbidden(
            "Reopening an archived store requires the 'settings:manage' permission.",
            missing_permission="settings:manage",
        )
    previous = store.status
    store.status = body.status
    store.version += 1
    await session.flush()
    await events.store_status_changed(session, store, previous, body.reason)
    await record(
        session,
        merchant_id=store.merchant_id,
        action="store_status_changed",
        actor_id=actor.id,
        detail={"store_id": str(store.id), "from": previous, "to": store.status},
    )
    return StoreOut.model_validate(store)
