"""Orders' reaction to payments: tenders, refunds and failed attempts.

Each effect is keyed by the payment or refund id (a primary key, inserted with ``ON CONFLICT
DO NOTHING``), on top of the inbox's event-id dedupe, so a payment re-announced under a new
event id is still counted once. Order does not matter: a tender or refund that arrives before
its order waits for it (placing the order settles it), a refund that arrives before its
payment's success waits until the order is paid, and a failure never undoes a success.
"""

from __future__ import annotations

import logging

from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import EventEnvelope
from contracts.events.payments import PaymentFailed, PaymentRefunded, PaymentSucceeded
from orders.catalog.handlers import merchant_of
from orders.models import PaymentFailure, Refund, Tender
from orders.order import service
from orders.shifts.service import refund_shift
from servicekit.consumer import HandlerRegistry

log = logging.getLogger(__name__)

handlers = HandlerRegistry()


@handlers.on("payments.payment.succeeded")
async def payment_succeeded(session: AsyncSession, envelope: EventEnvelope) -> None:
    merchant_id = merchant_of(envelope)
    payment = PaymentSucceeded.model_validate(envelope.payload)
    order = await service.load_for_event(session, merchant_id, payment.order_id)
    inserted = await session.execute(
        pg.insert(Tender)
        .values(
            merchant_id=merchant_id,
            payment_id=payment.payment_id,
            order_id=payment.order_id,
            method=payment.method,
            currency=payment.amount.currency,
            amount=payment.amount.amount,
            shift_id=order.shift_id if order is not None else None,
        )
        .on_conflict_do_nothing(index_elements=[Tender.merchant_id, Tender.payment_id])
        .returning(Tender.payment_id)
    )
    if inserted.scalar_one_or_none() is None:
        return
    if order is None:
        # An offline payment synced before its order: placing the order settles it.
        log.info("payment %s for order %s, not placed yet", payment.payment_id, payment.order_id)
        return
    if order.status == "cancelled":
        # Payments refunds a capture for a cancelled order by itself; the tender and that
        # refund are shown on the order, which stays cancelled.
        log.warning("payment %s succeeded for cancelled order %s", payment.payment_id, order.id)
    await service.settle(
        session,
        order,
        causation_id=envelope.event_id,
        correlation_id=envelope.correlation_id or envelope.event_id,
    )


@handlers.on("payments.payment.refunded")
async def payment_refunded(session: AsyncSession, envelope: EventEnvelope) -> None:
    merchant_id = merchant_of(envelope)
    refunded = PaymentRefunded.model_validate(envelope.payload)
    order = await service.load_for_event(session, merchant_id, refunded.order_id)
    inserted = await session.execute(
        pg.insert(Refund)
        .values(
            merchant_id=merchant_id,
            refund_id=refunded.refund_id,
            order_id=refunded.order_id,
            payment_id=refunded.payment_id,
            method=refunded.method,
            currency=refunded.amount.currency,
            amount=refunded.amount.amount,
            requested_returned_lines=service.returned_lines_json(refunded.returned_lines),
            returned_lines=[],
            shift_id=await refund_shift(session, order) if order is not None else None,
        )
        .on_conflict_do_nothing(index_elements=[Refund.merchant_id, Refund.refund_id])
        .returning(Refund.refund_id)
    )
    if inserted.scalar_one_or_none() is None or order is None:
        # Known already, or its order is not placed yet: placing it counts the refund.
        return
    await service.settle(
        session,
        order,
        causation_id=envelope.event_id,
        correlation_id=envelope.correlation_id or envelope.event_id,
    )


@handlers.on("payments.payment.failed")
async def payment_failed(session: AsyncSession, envelope: EventEnvelope) -> None:
    merchant_id = merchant_of(envelope)
    failed = PaymentFailed.model_validate(envelope.payload)
    # History only: a failure arriving after the same payment's success changes nothing.
    await session.execute(
        pg.insert(PaymentFailure)
        .values(
            merchant_id=merchant_id,
            payment_id=failed.payment_id,
            order_id=failed.order_id,
            method=failed.method,
            currency=failed.amount.currency,
            amount=failed.amount.amount,
            reason=failed.reason,
        )
        .on_conflict_do_nothing(
            index_elements=[PaymentFailure.merchant_id, PaymentFailure.payment_id]
        )
    )
