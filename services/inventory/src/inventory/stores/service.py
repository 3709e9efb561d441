"""The store check every request naming a store goes through."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Annotated

import sqlalchemy as sa
from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from inventory.models import Store
from servicekit.auth import Principal, require_store_access
from servicekit.errors import Locked, NotFound

_POLL_SECONDS = 0.05


def store_replica_wait(request: Request) -> float:
    """How long a request may wait for a store identity has not told us about yet."""
    return float(getattr(request.app.state.settings, "store_replica_wait", 0.0))


StoreWaitDep = Annotated[float, Depends(store_replica_wait)]


async def require_store(
    session: AsyncSession, principal: Principal, store_id: uuid.UUID, *, wait: float = 0.0
) -> str:
    """The store's status; 404 unless the store is one of the caller's merchant's stores and
    in the caller's scope (an unknown store and another merchant's store look the same).

    A store created a moment ago may not have reached the replica: when identity has told
    us nothing at all about this id, the check waits up to ``wait`` seconds for it. Writes
    wait (their 404 would settle the idempotency key for good); a read answers at once and
    the client simply asks again."""
    require_store_access(principal, store_id)
    # Every owner of the id in one read, so "not ours" and "not heard of yet" cannot race;
    # only the caller's merchant's row is ever used, and a foreign one ends in the same 404.
    owners = sa.select(Store.merchant_id, Store.status).where(Store.store_id == store_id)
    deadline = time.monotonic() + wait
    while True:
        rows = (await session.execute(owners)).all()
        for merchant_id, status in rows:
            if merchant_id == principal.merchant_id:
                return str(status)
        if rows or time.monotonic() >= deadline:
            raise NotFound("Store not found.", code="store_not_found")
        await asyncio.sleep(_POLL_SECONDS)


async def require_writable_store(
    session: AsyncSession, principal: Principal, store_id: uuid.UUID, *, wait: float = 0.0
) -> None:
    """:func:`require_store`, and 423 while identity has the store locked or archived."""
    status = await require_store(session, principal, store_id, wait=wait)
    if status != "active":
        raise Locked(
            f"The store is {status.replace('_', '-')}: it takes no stock or price changes.",
            code=f"store_{status}",
        )
