"""HTTP endpoints of the offline sync: ``/v1/orders/sync``."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from orders.order.schemas import TillId
from orders.sync import service
from orders.sync.schemas import SyncBatch, SyncBatchOut, SyncState
from servicekit.auth import Principal, PrincipalDep, require
from servicekit.errors import problem_responses
from servicekit.idempotency import Idempotency, IdempotentRoute
from servicekit.uow import SessionDep

router = APIRouter(prefix="/v1/orders/sync", tags=["offline sync"], route_class=IdempotentRoute)

SyncWriter = Annotated[Principal, Depends(require("orders:write"))]


@router.post(
    "",
    dependencies=[Depends(Idempotency(required=True))],
    responses=problem_responses(403, 409, 422, 423),
)
async def sync_orders(body: SyncBatch, principal: SyncWriter, session: SessionDep) -> SyncBatchOut:
    """Upload up to 200 orders a till took offline (``orders:write``; ``Idempotency-Key``
    required). Answers 200 with a result per order: ``created``, ``already_synced`` (with what
    the server holds) or ``rejected`` (with a problem and its stable code). See
    ``docs/api/orders.md`` for the retry protocol."""
    return await service.sync_batch(session, principal, body)


@router.get("/state", responses=problem_responses(403))
async def sync_state(
    principal: PrincipalDep,
    session: SessionDep,
    store_id: uuid.UUID,
    till_id: Annotated[TillId, Query()],
) -> SyncState:
    """A till's sync state: its last batch and the orders the server holds per business day."""
    return await service.sync_state(session, principal, store_id, till_id)
