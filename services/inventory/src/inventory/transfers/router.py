"""HTTP endpoints of transfers (``/v1/stores/{store_id}/transfers``), stock across the
caller's stores (``/v1/stock``) and replenishment suggestions."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query, status

from inventory.models import StockLevel, Transfer
from inventory.stores.service import StoreWaitDep, require_store, require_writable_store
from inventory.transfers import service
from inventory.transfers.schemas import (
    Replenishment,
    StoreStockOut,
    TransferCreate,
    TransferOut,
    TransferStatus,
    TransferStep,
    Transition,
)
from servicekit.auth import Principal, PrincipalDep, require, scoped, scoped_to_merchant
from servicekit.errors import problem_responses
from servicekit.idempotency import Idempotency, IdempotentRoute
from servicekit.pagination import CursorParamsDep, Page, paginate
from servicekit.uow import SessionDep

router = APIRouter(
    prefix="/v1/stores/{store_id}/transfers", tags=["transfers"], route_class=IdempotentRoute
)
stock = APIRouter(tags=["stock"])

StockAdjuster = Annotated[Principal, Depends(require("inventory:adjust"))]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    dependencies=[Depends(Idempotency())],
    responses=problem_responses(403, 404, 409, 422, 423),
)
async def request_transfer(
    store_id: uuid.UUID,
    body: TransferCreate,
    principal: StockAdjuster,
    session: SessionDep,
    wait: StoreWaitDep,
) -> TransferOut:
    """The store in the path asks another store of the merchant for goods
    (``inventory:adjust``)."""
    await require_writable_store(session, principal, store_id, wait=wait)
    return await service.request(session, principal, store_id, body)


@router.get("", responses=problem_responses(404))
async def list_transfers(
    store_id: uuid.UUID,
    principal: PrincipalDep,
    session: SessionDep,
    params: CursorParamsDep,
    direction: Literal["in", "out"] | None = None,
    transfer_status: Annotated[TransferStatus | None, Query(alias="status")] = None,
) -> Page[TransferOut]:
    """Transfers into (``direction=in``) or out of this store, newest first."""
    await require_store(session, principal, store_id)
    stmt = scoped_to_merchant(sa.select(Transfer), Transfer, principal.merchant_id)
    if direction == "in":
        stmt = stmt.where(Transfer.to_store_id == store_id)
    elif direction == "out":
        stmt = stmt.where(Transfer.from_store_id == store_id)
    else:
        stmt = stmt.where(
            sa.or_(Transfer.to_store_id == store_id, Transfer.from_store_id == store_id)
        )
    if transfer_status is not None:
        stmt = stmt.where(Transfer.status == transfer_status)
    page = await paginate(
        session,
        stmt,
        order_by=(Transfer.created_at, Transfer.id),
        params=params,
        descending=True,
    )
    lines = await service.lines_of(session, principal.merchant_id, [t.id for t in page.items])
    return Page[TransferOut](
        items=[service.transfer_out(t, lines[t.id]) for t in page.items],
        next_cursor=page.next_cursor,
    )


@router.get("/{transfer_id}", responses=problem_responses(404))
async def get_transfer(
    store_id: uuid.UUID, transfer_id: uuid.UUID, principal: PrincipalDep, session: SessionDep
) -> TransferOut:
    await require_store(session, principal, store_id)
    return await service.read(session, principal, store_id, transfer_id)


@router.post(
    "/{transfer_id}/ship",
    dependencies=[Depends(Idempotency(required=True))],
    responses=problem_responses(400, 403, 404, 409, 422, 423),
)
async def ship_transfer(
    store_id: uuid.UUID,
    transfer_id: uuid.UUID,
    body: TransferStep,
    principal: StockAdjuster,
    session: SessionDep,
) -> TransferOut:
    """The supplying store (the path's) sends the goods: they leave its stock and are in
    transit (``inventory:adjust``; ``Idempotency-Key`` required)."""
    await require_writable_store(session, principal, store_id)
    return await service.ship(session, principal, store_id, transfer_id, body)


@router.post(
    "/{transfer_id}/receive",
    dependencies=[Depends(Idempotency(required=True))],
    responses=problem_responses(400, 403, 404, 409, 422, 423),
)
async def receive_transfer(
    store_id: uuid.UUID,
    transfer_id: uuid.UUID,
    body: TransferStep,
    principal: StockAdjuster,
    session: SessionDep,
) -> TransferOut:
    """The requesting store (the path's) takes in what arrived; each line's ``discrepancy``
    is received minus shipped (``inventory:adjust``; ``Idempotency-Key`` required)."""
    await require_writable_store(session, principal, store_id)
    return await service.receive(session, principal, store_id, transfer_id, body)


@router.post("/{transfer_id}/cancel", responses=problem_responses(403, 404, 409, 423))
async def cancel_transfer(
    store_id: uuid.UUID,
    transfer_id: uuid.UUID,
    body: Transition,
    principal: StockAdjuster,
    session: SessionDep,
) -> TransferOut:
    """Either store withdraws a request not yet shipped."""
    await require_writable_store(session, principal, store_id)
    return await service.cancel(session, principal, store_id, transfer_id, body.version)


@stock.get("/v1/stock")
async def stock_across_stores(
    principal: PrincipalDep,
    session: SessionDep,
    params: CursorParamsDep,
    product_id: uuid.UUID,
    low: bool | None = None,
) -> Page[StoreStockOut]:
    """A product's stock in every store the caller may see (HQ: all; a regional manager:
    their region's), with what is in transit to each."""
    stmt = scoped(sa.select(StockLevel), StockLevel, principal).where(
        StockLevel.product_id == product_id
    )
    if low is not None:
        is_low = sa.and_(
            StockLevel.low_threshold.is_not(None), StockLevel.on_hand <= StockLevel.low_threshold
        )
        stmt = stmt.where(is_low if low else sa.not_(is_low))
    page = await paginate(
        session,
        stmt,
        order_by=(StockLevel.product_id, StockLevel.store_id),
        params=params,
    )
    return Page[StoreStockOut](
        items=await service.with_transit(session, principal.merchant_id, list(page.items)),
        next_cursor=page.next_cursor,
    )


@stock.get("/v1/stores/{store_id}/replenishment", responses=problem_responses(404))
async def replenishment(
    store_id: uuid.UUID,
    principal: PrincipalDep,
    session: SessionDep,
    days: Annotated[int, Query(ge=1, le=365, description="Sales window.")] = 28,
    cover_days: Annotated[int, Query(ge=1, le=365, description="Days to stock for.")] = 14,
) -> Replenishment:
    """What to order for this store, from its recent sales, thresholds and stock on the
    way."""
    await require_store(session, principal, store_id)
    return await service.replenishment(
        session, principal.merchant_id, store_id, days=days, cover_days=cover_days
    )
