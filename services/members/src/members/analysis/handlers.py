"""Event consumer of visit facts: orders paid and refunded, for member analysis. A consumer
of its own, so analysis lagging or failing never holds up points. A visit or refund can move
the member to another RFM segment, which tag rules may name: the member is re-evaluated here
when one does."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import EventEnvelope
from contracts.events.orders import OrderPaid, OrderRefunded
from members.analysis import service
from members.tags.service import refresh_for_visits
from servicekit.consumer import HandlerRegistry

handlers = HandlerRegistry()


@handlers.on("orders.order.paid")
async def order_paid(session: AsyncSession, envelope: EventEnvelope) -> None:
    await service.record_paid_order(session, envelope)
    paid = OrderPaid.model_validate(envelope.payload)
    if paid.member_id is not None and envelope.merchant_id is not None:
        await refresh_for_visits(session, envelope.merchant_id, paid.member_id, envelope)


@handlers.on("orders.order.refunded")
async def order_refunded(session: AsyncSession, envelope: EventEnvelope) -> None:
    await service.record_refund(session, envelope)
    refund = OrderRefunded.model_validate(envelope.payload)
    if refund.member_id is not None and envelope.merchant_id is not None:
        await refresh_for_visits(session, envelope.merchant_id, refund.member_id, envelope)
