"""Keeps the order replica up to date from the orders events."""

from __future__ import annotations

import logging

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import EventEnvelope
from contracts.events.orders import OrderCancelled, OrderPaid, OrderPlaced
from payments.models import OrderReplica
from servicekit.consumer import HandlerRegistry, PoisonMessage

log = logging.getLogger(__name__)

handlers = HandlerRegistry()


def _merchant(envelope: EventEnvelope) -> object:
    if envelope.merchant_id is None:
        raise PoisonMessage(f"{envelope.type} {envelope.event_id} names no merchant")
    return envelope.merchant_id


@handlers.on("orders.order.placed")
async def order_placed(session: AsyncSession, envelope: EventEnvelope) -> None:
    placed = OrderPlaced.model_validate(envelope.payload)
    await session.execute(
        pg_insert(OrderReplica)
        .values(
            order_id=placed.order_id,
            merchant_id=_merchant(envelope),
            store_id=placed.store_id,
            member_id=placed.member_id,
            total_amount=placed.total.amount,
            currency=placed.total.currency,
            state="open",
        )
        .on_conflict_do_nothing(index_elements=[OrderReplica.order_id])
    )


@handlers.on("orders.order.cancelled")
async def order_cancelled(session: AsyncSession, envelope: EventEnvelope) -> None:
    cancelled = OrderCancelled.model_validate(envelope.payload)
    result = await session.execute(
        sa.update(OrderReplica)
        .where(
            OrderReplica.order_id == cancelled.order_id,
            OrderReplica.merchant_id == _merchant(envelope),
        )
        .values(state="cancelled")
    )
    if not getattr(result, "rowcount", 0):
        log.warning("cancellation of unknown order %s", cancelled.order_id)


@handlers.on("orders.order.paid")
async def order_paid(session: AsyncSession, envelope: EventEnvelope) -> None:
    # Orders may count tenders payments never saw (offline cash): once it says paid, no
    # further payment is taken, and an order whose placement we missed becomes known.
    paid = OrderPaid.model_validate(envelope.payload)
    await session.execute(
        pg_insert(OrderReplica)
        .values(
            order_id=paid.order_id,
            merchant_id=_merchant(envelope),
            store_id=paid.store_id,
            member_id=paid.member_id,
            total_amount=paid.total.amount,
            currency=paid.total.currency,
            state="paid",
        )
        .on_conflict_do_update(
            index_elements=[OrderReplica.order_id],
            set_={"state": "paid", "updated_at": sa.func.now()},
        )
    )
