"""HTTP endpoints of orders: ``/v1/orders``."""

from __future__ import annotations

import uuid
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Body, Depends, Query, Response, status

from orders.models import Order
from orders.order import service
from orders.order.schemas import CancelIn, OrderCreate, OrderOut, OrderStatus, OrderSummary
from orders.promotions.schemas import QuoteOut
from orders.reports.filters import OrderFiltersDep
from servicekit.auth import Principal, PrincipalDep, require, require_store_access, scoped
from servicekit.errors import problem_responses
from servicekit.idempotency import Idempotency, IdempotentRoute
from servicekit.pagination import CursorParamsDep, Page, paginate
from servicekit.uow import SessionDep

router = APIRouter(prefix="/v1/orders", tags=["orders"], route_class=IdempotentRoute)

OrderWriter = Annotated[Principal, Depends(require("orders:write"))]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    dependencies=[Depends(Idempotency(required=True))],
    responses={
        200: {"description": "This order was placed before; here it is.", "model": OrderOut},
        **problem_responses(400, 403, 409, 422, 423),
    },
)
async def place_order(
    body: OrderCreate, principal: OrderWriter, session: SessionDep, response: Response
) -> OrderOut:
    """Place an order under its client-generated id (``orders:write``; ``Idempotency-Key``
    required).

    The same key and body replay the first answer; the same order under another key returns
    it with 200; the same id with a different body is 409 ``order_id_conflict``. The store and
    the member must be known to orders for the caller's merchant (422 ``unknown_store``,
    ``unknown_member``); ``occurred_at`` may be at most five minutes ahead (422
    ``occurred_in_future``).

    Promotions running in the store are applied; each of ``coupon_ids`` must apply and is
    held by the order (422 ``coupon_not_found`` for a coupon unknown here,
    ``coupon_not_applicable`` with the reason per coupon; 409 ``coupon_unavailable`` when
    another order holds it, it was used or withdrawn).
    """
    order, created = await service.place_order(session, principal, body)
    if not created:
        response.status_code = status.HTTP_200_OK
    return order


@router.post("/quote", responses=problem_responses(403, 404, 422, 423))
async def quote_order(body: OrderCreate, principal: OrderWriter, session: SessionDep) -> QuoteOut:
    """What placing this order would cost, without placing it (``orders:write``): totals,
    what each promotion and coupon took off each line, and the promotions and coupons that
    did not apply with the reason. The body is the one ``POST /v1/orders`` takes; nothing is
    written and no coupon is held, so the answer may differ from the placement when a coupon
    is taken meanwhile."""
    return await service.quote(session, principal, body)


@router.get("")
async def list_orders(
    principal: PrincipalDep,
    session: SessionDep,
    params: CursorParamsDep,
    filters: OrderFiltersDep,
    store_id: uuid.UUID | None = None,
    order_status: Annotated[OrderStatus | None, Query(alias="status")] = None,
) -> Page[OrderSummary]:
    """Orders the caller may see, newest first; ``number`` finds an order by its number."""
    stmt = scoped(sa.select(Order), Order, principal)
    stmt = filters.apply(stmt)
    if store_id is not None:
        require_store_access(principal, store_id)
        stmt = stmt.where(Order.store_id == store_id)
    if order_status is not None:
        stmt = stmt.where(Order.status == order_status)
    return await paginate(
        session,
        stmt,
        order_by=(Order.created_at, Order.id),
        params=params,
        map=service.summary_out,
        descending=True,
    )


@router.get("/{order_id}", responses=problem_responses(404))
async def get_order(order_id: uuid.UUID, principal: PrincipalDep, session: SessionDep) -> OrderOut:
    """The order with its lines, tenders and refunds."""
    order = await service.get_visible(session, principal, order_id)
    return await service.order_out(session, order)


@router.post("/{order_id}/cancel", responses=problem_responses(403, 404, 409, 423))
async def cancel_order(
    order_id: uuid.UUID,
    principal: OrderWriter,
    session: SessionDep,
    body: Annotated[CancelIn | None, Body()] = None,
) -> OrderOut:
    """Cancel an order that is not paid yet and holds no money (``orders:write``).

    While its succeeded tenders are not all refunded: 409 ``order_has_payments`` (refund
    first)."""
    return await service.cancel(session, principal, order_id, body.reason if body else None)


@router.post("/{order_id}/complete", responses=problem_responses(403, 404, 409, 423))
async def complete_order(
    order_id: uuid.UUID, principal: OrderWriter, session: SessionDep
) -> OrderOut:
    """Mark a paid order as handed over (``orders:write``)."""
    return await service.complete(session, principal, order_id)
