"""The events a payment's changes write to the outbox, in the transaction of the change."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import EventEnvelope
from contracts.events.orders import ReturnedLine
from contracts.events.payments import (
    PaymentFailed,
    PaymentRefunded,
    PaymentSucceeded,
    RechargeSucceeded,
    StoredValueCreditRequested,
    StoredValueDebitRequested,
)
from contracts.money import Money
from contracts.registry import EventPayload, make_envelope
from payments.models import Payment, Refund
from servicekit.outbox import add_event

PRODUCER = "payments"
RECHARGE = "stored_value_recharge"


def _money(amount: int, currency: str) -> Money:
    return Money.of(amount, currency)


def _envelope(event: EventPayload, payment: Payment) -> EventEnvelope:
    return make_envelope(
        event,
        producer=PRODUCER,
        aggregate_id=payment.id,
        merchant_id=payment.merchant_id,
        store_id=payment.store_id,
    )


async def succeeded(session: AsyncSession, payment: Payment) -> None:
    if payment.purpose == RECHARGE:
        await _recharge_succeeded(session, payment)
        return
    assert payment.order_id is not None
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
    if payment.order_id is None:
        return  # a recharge that took nothing: no order waits for it, no account moves
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
    if payment.order_id is None:
        return  # a recharge given back: no order to reverse
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


async def _recharge_succeeded(session: AsyncSession, payment: Payment) -> None:
    assert payment.member_id is not None
    event = RechargeSucceeded(
        payment_id=payment.id,
        member_id=payment.member_id,
        store_id=payment.store_id,
        method=payment.method,
        amount=_money(payment.amount, payment.currency),
        provider=payment.provider,
    )
    await add_event(session, _envelope(event, payment))


async def debit_requested(session: AsyncSession, payment: Payment) -> None:
    """Ask members to debit the account of a pending stored-value payment."""
    assert payment.member_id is not None
    assert payment.order_id is not None
    event = StoredValueDebitRequested(
        tender="points" if payment.method == "points" else "stored_value",
        payment_id=payment.id,
        member_id=payment.member_id,
        order_id=payment.order_id,
        store_id=payment.store_id,
        amount=_money(payment.amount, payment.currency),
    )
    await add_event(session, _envelope(event, payment))


async def credit_requested(session: AsyncSession, payment: Payment, refund: Refund) -> None:
    """Ask members to put a refund of a stored-value payment back on the account."""
    assert payment.member_id is not None
    assert payment.order_id is not None
    event = StoredValueCreditRequested(
        tender="points" if payment.method == "points" else "stored_value",
        refund_id=refund.id,
        payment_id=payment.id,
        member_id=payment.member_id,
        order_id=payment.order_id,
        store_id=payment.store_id,
        amount=_money(refund.amount, refund.currency),
    )
    await add_event(session, _envelope(event, payment))
