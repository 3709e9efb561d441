"""The events a payment's changes write to the outbox, in the transaction of the change."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import EventEnvelope
from contracts.events.orders import ReturnedLine
from contracts.events.payments import PaymentFailed, PaymentRefunded, PaymentSucceeded
from contracts.money import Money
from contracts.registry import make_envelope
from payments.models import Payment, Refund
from servicekit.outbox import add_event

PRODUCER = "payments"


def _money(amount: int, currency: str) -> Money:
    return Money.of(amount, currency)


def _envelope(
    event: PaymentSucceeded | PaymentFailed | PaymentRefunded, payment: Payment
) -> EventEnvelope:
    return make_envelope(
        event,
        producer=PRODUCER,
        aggregate_id=payment.id,
        merchant_id=payment.merchant_id,
        store_id=payment.store_id,
    )


async def succeeded(session: AsyncSession, payment: Payment) -> None:
    event = PaymentSucceeded(
        payment_id=payment.id,
        order_id=payment.order_id,
        store_id=payment.store_id,
        method=payment.method,
        amount=_money(payment.amount, payment.currency),
        fee=_money(payment.fee_amount, payment.currency),
        net=_money(payment.amount - payment.fee_amount, payment.currency),
        fee_rate_bps=payment.fee_rate_bps,
        settlement_account_id=payment.settlement_account_id,
        provider=payment.provider,
        provider_reference=payment.provider_reference,
    )
    await add_event(session, _envelope(event, payment))


async def failed(session: AsyncSession, payment: Payment, reason: str) -> None:
    event = PaymentFailed(
        payment_id=payment.id,
        order_id=payment.order_id,
        store_id=payment.store_id,
        method=payment.method,
        amount=_money(payment.amount, payment.currency),
        reason=reason,
    )
    await add_event(session, _envelope(event, payment))


async def refunded(session: AsyncSession, payment: Payment, refund: Refund) -> None:
    event = PaymentRefunded(
        refund_id=refund.id,
        payment_id=payment.id,
        order_id=payment.order_id,
        store_id=payment.store_id,
        method=payment.method,
        amount=_money(refund.amount, refund.currency),
        fee_refunded=_money(refund.fee_refunded_amount, refund.currency),
        returned_lines=[ReturnedLine.model_validate(line) for line in refund.returned_lines],
        reason=refund.reason,
    )
    await add_event(session, _envelope(event, payment))
