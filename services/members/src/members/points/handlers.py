"""Event consumers of the points ledger: orders paid and refunded."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import EventEnvelope
from members.points import service
from servicekit.consumer import HandlerRegistry

handlers = HandlerRegistry()


@handlers.on("orders.order.paid")
async def order_paid(session: AsyncSession, envelope: EventEnvelope) -> None:
    await service.award_for_paid_order(session, envelope)


@handlers.on("orders.order.refunded")
async def order_refunded(session: AsyncSession, envelope: EventEnvelope) -> None:
    await service.reverse_for_refund(session, envelope)
