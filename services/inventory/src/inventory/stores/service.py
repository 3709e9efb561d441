"""The store check every write naming a store goes through."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from inventory.models import Store
from servicekit.auth import Principal, require_store_access, scoped
from servicekit.errors import Locked, NotFound


async def require_store(session: AsyncSession, principal: Principal, store_id: uuid.UUID) -> str:
    """The store's status; 404 unless the store is one of the caller's merchant's stores and
    in the caller's scope (an unknown store and another merchant's store look the same)."""
    require_store_access(principal, store_id)
    status = await session.scalar(
        scoped(sa.select(Store.status), Store, principal).where(Store.store_id == store_id)
    )
    if status is None:
        raise NotFound("Store not found.", code="store_not_found")
    return status


async def require_writable_store(
    session: AsyncSession, principal: Principal, store_id: uuid.UUID
) -> None:
    """:func:`require_store`, and 423 while identity has the store locked or archived."""
    status = await require_store(session, principal, store_id)
    if status != "active":
        raise Locked(
            f"The store is {status.replace('_', '-')}: it takes no stock or price changes.",
            code=f"store_{status}",
        )
