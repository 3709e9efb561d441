"""HTTP endpoints of stocktaking: ``/v1/stores/{store_id}/stocktakes``."""

from __future__ import annotations

import uuid
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Depends, status

from inventory.models import Stocktake
from inventory.stocktakes import service
from inventory.stocktakes.schemas import (
    CountsIn,
    CountsOut,
    DiscrepancyReport,
    StocktakeCreate,
    StocktakeOut,
    Transition,
)
from inventory.stores.service import StoreWaitDep, require_store, require_writable_store
from servicekit.auth import Principal, PrincipalDep, require, scoped
from servicekit.errors import problem_responses
from servicekit.idempotency import Idempotency, IdempotentRoute
from servicekit.pagination import CursorParamsDep, Page, paginate
from servicekit.uow import SessionDep

router = APIRouter(
    prefix="/v1/stores/{store_id}/stocktakes", tags=["stocktaking"], route_class=IdempotentRoute
)

StockAdjuster = Annotated[Principal, Depends(require("inventory:adjust"))]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    dependencies=[Depends(Idempotency())],
    responses=problem_responses(403, 404, 409, 422, 423),
)
async def start_stocktake(
    store_id: uuid.UUID,
    body: StocktakeCreate,
    principal: StockAdjuster,
    session: SessionDep,
    wait: StoreWaitDep,
) -> StocktakeOut:
    """Open a count of the store, of every product or of one category's subtree; each
    product's on-hand is frozen as its book quantity (``inventory:adjust``). One open
    stocktake per store: 409 ``stocktake_already_open``."""
    await require_writable_store(session, principal, store_id, wait=wait)
    return await service.start(session, principal, store_id, body)


@router.get("", responses=problem_responses(404))
async def list_stocktakes(
    store_id: uuid.UUID, principal: PrincipalDep, session: SessionDep, params: CursorParamsDep
) -> Page[StocktakeOut]:
    await require_store(session, principal, store_id)
    page = await paginate(
        session,
        scoped(sa.select(Stocktake), Stocktake, principal).where(Stocktake.store_id == store_id),
        order_by=(Stocktake.started_at, Stocktake.id),
        params=params,
        descending=True,
    )
    return Page[StocktakeOut](
        items=[await service.summary(session, s) for s in page.items],
        next_cursor=page.next_cursor,
    )


@router.get("/{stocktake_id}", responses=problem_responses(404))
async def get_stocktake(
    store_id: uuid.UUID, stocktake_id: uuid.UUID, principal: PrincipalDep, session: SessionDep
) -> StocktakeOut:
    await require_store(session, principal, store_id)
    return await service.read(session, principal, store_id, stocktake_id)


@router.post(
    "/{stocktake_id}/counts",
    dependencies=[Depends(Idempotency(required=True))],
    responses=problem_responses(400, 403, 404, 409, 422, 423),
)
async def add_counts(
    store_id: uuid.UUID,
    stocktake_id: uuid.UUID,
    body: CountsIn,
    principal: StockAdjuster,
    session: SessionDep,
) -> CountsOut:
    """Scans or typed figures from one device, added to the other devices' (``inventory:adjust``;
    ``Idempotency-Key`` required, so a device's retry never counts twice)."""
    await require_writable_store(session, principal, store_id)
    return await service.add_counts(session, principal, store_id, stocktake_id, body)


@router.get("/{stocktake_id}/report", responses=problem_responses(404))
async def discrepancy_report(
    store_id: uuid.UUID,
    stocktake_id: uuid.UUID,
    principal: PrincipalDep,
    session: SessionDep,
    only_differences: bool = False,
) -> DiscrepancyReport:
    """Book against counted for each product, with the value of each difference at cost
    (values shown with ``catalog:manage``)."""
    await require_store(session, principal, store_id)
    return await service.report(
        session, principal, store_id, stocktake_id, only_differences=only_differences
    )


@router.post(
    "/{stocktake_id}/approve",
    dependencies=[Depends(Idempotency(required=True))],
    responses=problem_responses(400, 403, 404, 409, 423),
)
async def approve_stocktake(
    store_id: uuid.UUID,
    stocktake_id: uuid.UUID,
    body: Transition,
    principal: StockAdjuster,
    session: SessionDep,
) -> StocktakeOut:
    """Post every counted product as a physical count, in one transaction (a store manager or
    above with ``inventory:adjust``: 403 ``manager_approval_required`` otherwise;
    ``Idempotency-Key`` required)."""
    await require_writable_store(session, principal, store_id)
    return await service.approve(session, principal, store_id, stocktake_id, body.version)


@router.post("/{stocktake_id}/cancel", responses=problem_responses(403, 404, 409, 423))
async def cancel_stocktake(
    store_id: uuid.UUID,
    stocktake_id: uuid.UUID,
    body: Transition,
    principal: StockAdjuster,
    session: SessionDep,
) -> StocktakeOut:
    """Drop the count; nothing is posted."""
    await require_writable_store(session, principal, store_id)
    return await service.cancel(session, principal, store_id, stocktake_id, body.version)
