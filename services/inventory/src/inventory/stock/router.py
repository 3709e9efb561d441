"""HTTP endpoints of the stock ledger: ``/v1/stores/{store_id}/...``."""

from __future__ import annotations

import uuid
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query, status

from inventory.models import StockLevel, StockMovement
from inventory.stock import service
from inventory.stock.schemas import (
    Adjustment,
    Count,
    MovementKind,
    MovementOut,
    MovementsOut,
    StockIn,
    StockLevelOut,
    ThresholdSet,
)
from inventory.stock.service import Change
from inventory.stores.service import StoreWaitDep, require_store, require_writable_store
from servicekit.auth import Principal, PrincipalDep, require, scoped
from servicekit.errors import FieldError, ValidationFailed, problem_responses
from servicekit.idempotency import Idempotency, IdempotentRoute
from servicekit.pagination import CursorParamsDep, Page, paginate
from servicekit.uow import SessionDep

router = APIRouter(prefix="/v1/stores/{store_id}", tags=["stock"], route_class=IdempotentRoute)

StockAdjuster = Annotated[Principal, Depends(require("inventory:adjust"))]


@router.post(
    "/stock-in",
    status_code=status.HTTP_201_CREATED,
    dependencies=[Depends(Idempotency(required=True))],
    responses=problem_responses(400, 403, 404, 409, 422, 423),
)
async def receive_goods(
    store_id: uuid.UUID,
    body: StockIn,
    principal: StockAdjuster,
    session: SessionDep,
    wait: StoreWaitDep,
) -> MovementsOut:
    """Goods received into the store (``inventory:adjust``; ``Idempotency-Key`` required)."""
    await require_writable_store(session, principal, store_id, wait=wait)
    ids = [line.product_id for line in body.lines]
    await service.require_products(session, principal.merchant_id, ids, "lines[{i}].product_id")
    singles = await service.in_singles(session, principal.merchant_id, body.lines)
    changes = [
        Change(
            product_id=line.product_id,
            kind="stock_in",
            quantity=quantity,
            occurred_at=body.occurred_at,
            reason="received",
            reference=body.document,
        )
        for line, quantity in zip(body.lines, singles, strict=True)
    ]
    movements = await service.record_many(session, principal.merchant_id, store_id, changes)
    return MovementsOut(movements=[service.movement_out(m) for m in movements])


@router.post(
    "/adjustments",
    status_code=status.HTTP_201_CREATED,
    dependencies=[Depends(Idempotency(required=True))],
    responses=problem_responses(403, 404, 409, 422, 423),
)
async def adjust_stock(
    store_id: uuid.UUID,
    body: Adjustment,
    principal: StockAdjuster,
    session: SessionDep,
    wait: StoreWaitDep,
) -> MovementOut:
    """A signed correction with its reason (``inventory:adjust``; ``Idempotency-Key``
    required)."""
    await require_writable_store(session, principal, store_id, wait=wait)
    if body.quantity == 0:
        raise ValidationFailed([FieldError("quantity", "out_of_range", "must not be zero.")])
    await service.require_products(session, principal.merchant_id, [body.product_id], "product_id")
    change = Change(
        product_id=body.product_id,
        kind="adjustment",
        quantity=body.quantity,
        occurred_at=body.occurred_at,
        reason=body.reason,
        reference=body.reference,
    )
    movement = await service.record(session, principal.merchant_id, store_id, change)
    assert movement is not None  # no source key, so never a duplicate
    return service.movement_out(movement)


@router.post(
    "/counts",
    status_code=status.HTTP_201_CREATED,
    dependencies=[Depends(Idempotency(required=True))],
    responses=problem_responses(403, 404, 409, 422, 423),
)
async def record_count(
    store_id: uuid.UUID,
    body: Count,
    principal: StockAdjuster,
    session: SessionDep,
    wait: StoreWaitDep,
) -> MovementsOut:
    """A physical count: each product's on-hand becomes its counted figure as of
    ``occurred_at``, plus whatever moved after that moment (``inventory:adjust``;
    ``Idempotency-Key`` required)."""
    await require_writable_store(session, principal, store_id, wait=wait)
    ids = [line.product_id for line in body.lines]
    if len(set(ids)) != len(ids):
        raise ValidationFailed([FieldError("lines", "duplicate_product", "one line per product.")])
    await service.require_products(session, principal.merchant_id, ids, "lines[{i}].product_id")
    changes = [
        Change(
            product_id=line.product_id,
            kind="count",
            quantity=line.counted,
            occurred_at=body.occurred_at,
            reason="physical count",
            reference=body.reference,
        )
        for line in body.lines
    ]
    movements = await service.record_many(session, principal.merchant_id, store_id, changes)
    return MovementsOut(movements=[service.movement_out(m) for m in movements])


@router.get("/stock", responses=problem_responses(404))
async def list_stock(
    store_id: uuid.UUID,
    principal: PrincipalDep,
    session: SessionDep,
    params: CursorParamsDep,
    negative: Annotated[bool | None, Query(description="Only negative (or only not)")] = None,
    low: Annotated[bool | None, Query(description="Only at or below threshold")] = None,
) -> Page[StockLevelOut]:
    """Every product with a ledger in this store; ``low=true`` is the store's low-stock
    list."""
    await require_store(session, principal, store_id)
    stmt = scoped(sa.select(StockLevel), StockLevel, principal).where(
        StockLevel.store_id == store_id
    )
    if negative is not None:
        stmt = stmt.where((StockLevel.on_hand < 0) == negative)
    if low is not None:
        is_low = sa.and_(
            StockLevel.low_threshold.is_not(None), StockLevel.on_hand <= StockLevel.low_threshold
        )
        stmt = stmt.where(is_low if low else sa.not_(is_low))
    return await paginate(
        session,
        stmt,
        order_by=(StockLevel.product_id, StockLevel.store_id),
        params=params,
        map=service.level_out,
    )


@router.get("/stock/{product_id}", responses=problem_responses(404))
async def get_stock(
    store_id: uuid.UUID,
    product_id: uuid.UUID,
    principal: PrincipalDep,
    session: SessionDep,
) -> StockLevelOut:
    await require_store(session, principal, store_id)
    return await service.get_level(session, principal.merchant_id, store_id, product_id)


@router.put("/stock/{product_id}/threshold", responses=problem_responses(403, 404, 422, 423))
async def set_threshold(
    store_id: uuid.UUID,
    product_id: uuid.UUID,
    body: ThresholdSet,
    principal: StockAdjuster,
    session: SessionDep,
    wait: StoreWaitDep,
) -> StockLevelOut:
    """Set the low-stock threshold: ``inventory.stock.low`` goes out once each time on-hand
    falls to or below it (``inventory:adjust``)."""
    await require_writable_store(session, principal, store_id, wait=wait)
    return await service.set_threshold(
        session, principal.merchant_id, store_id, product_id, body.threshold
    )


@router.get("/movements", responses=problem_responses(404))
async def list_movements(
    store_id: uuid.UUID,
    principal: PrincipalDep,
    session: SessionDep,
    params: CursorParamsDep,
    product_id: uuid.UUID | None = None,
    kind: MovementKind | None = None,
) -> Page[MovementOut]:
    """The ledger of this store, newest first."""
    await require_store(session, principal, store_id)
    stmt = scoped(sa.select(StockMovement), StockMovement, principal).where(
        StockMovement.store_id == store_id
    )
    if product_id is not None:
        stmt = stmt.where(StockMovement.product_id == product_id)
    if kind is not None:
        stmt = stmt.where(StockMovement.kind == kind)
    return await paginate(
        session,
        stmt,
        order_by=(StockMovement.recorded_at, StockMovement.id),
        params=params,
        map=service.movement_out,
        descending=True,
    )
