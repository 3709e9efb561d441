"""Keeps the order replica up to date from the orders events.

Each handler checks the envelope's merchant and applies through :func:`replica.apply`, so
events may come twice, late or out of order (see :mod:`payments.replica.service`).
"""

from __future__ import annotations

import uuid
from datetime import date

from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import EventEnvelope
from contracts.events.orders import OrderCancelled, OrderLine, OrderPaid, OrderPlaced
from payments.replica.service import OrderFacts, apply
from servicekit.consumer import HandlerRegistry, PoisonMessage

handlers = HandlerRegistry()


def _merchant(envelope: EventEnvelope, store_id: uuid.UUID) -> uuid.UUID:
    if envelope.merchant_id is None:
        raise PoisonMessage(f"{envelope.type} {envelope.event_id} names no merchant")
    if envelope.store_id is not None and envelope.store_id != store_id:
        raise PoisonMessage(f"{envelope.type} {envelope.event_id}: two different stores")
    return envelope.merchant_id


def _business_day(envelope: EventEnvelope) -> date | None:
    """The order's business day, when the producer says (events written before orders kept
    business days do not)."""
    value = envelope.payload.get("business_day")
    if value is None:
        return None
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise PoisonMessage(f"{envelope.type} {envelope.event_id}: bad business_day") from None


def _lines(lines: list[OrderLine]) -> list[tuple[uuid.UUID, int]]:
    return [(line.product_id, line.quantity) for line in lines]


@handlers.on("orders.order.placed")
async def order_placed(session: AsyncSession, envelope: EventEnvelope) -> None:
    placed = OrderPlaced.model_validate(envelope.payload)
    await apply(
        session,
        OrderFacts(
            merchant_id=_merchant(envelope, placed.store_id),
            order_id=placed.order_id,
            store_id=placed.store_id,
            state="open",
            member_id=placed.member_id,
            total_amount=placed.total.amount,
            currency=placed.total.currency,
            lines=_lines(placed.lines),
            business_day=_business_day(envelope),
        ),
    )


@handlers.on("orders.order.paid")
async def order_paid(session: AsyncSession, envelope: EventEnvelope) -> None:
    # Orders may count tenders payments never saw (offline cash): once it says paid, no
    # further payment is taken, and an order whose placement we missed becomes known.
    paid = OrderPaid.model_validate(envelope.payload)
    await apply(
        session,
        OrderFacts(
            merchant_id=_merchant(envelope, paid.store_id),
            order_id=paid.order_id,
            store_id=paid.store_id,
            state="paid",
            member_id=paid.member_id,
            total_amount=paid.total.amount,
            currency=paid.total.currency,
            lines=_lines(paid.lines),
            business_day=_business_day(envelope),
        ),
    )


@handlers.on("orders.order.cancelled")
async def order_cancelled(session: AsyncSession, envelope: EventEnvelope) -> None:
    # A pending provider payment of this order is cancelled at the provider by the
    # reconciler (never from here: no provider call inside a transaction).
    cancelled = OrderCancelled.model_validate(envelope.payload)
    await apply(
        session,
        OrderFacts(
            merchant_id=_merchant(envelope, cancelled.store_id),
            order_id=cancelled.order_id,
            store_id=cancelled.store_id,
            state="cancelled",
        ),
    )
