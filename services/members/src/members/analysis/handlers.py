"""Event consumer of visit facts: orders paid and refunded, for member analysis. A consumer
of its own, so analysis lagging or failing never holds up points."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import EventEnvelope
from members.analysis import service
from servicekit.consumer import HandlerRegistry

handlers = HandlerRegistry()


@handlers.on("orders.order.paid")
async def order_paid(session: AsyncSession, envelope: EventEnvelope) -> None:
    await service.record_paid_order(session, envelope)


@handlers.on("orders.order.refunded")
async def order_refunded(session: AsyncSession, envelope: EventEnvelope) -> None:
    await service.record_refund(session, envelope)
