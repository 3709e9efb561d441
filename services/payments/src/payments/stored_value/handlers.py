"""Members' answers about stored value, applied to payments and refunds once.

Every answer only moves what is still open (a pending payment, a pending refund), so a
duplicate, a late or a replayed answer changes nothing. A debit for a payment that can no
longer take it (its order was cancelled, or it had failed) is given back automatically.
"""

from __future__ import annotations

import logging
import uuid

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import EventEnvelope
from contracts.events.members import (
    StoredValueDebited,
    StoredValueDebitRefused,
    StoredValueRechargeRefused,
    StoredValueRefunded,
)
from contracts.money import Money
from payments.models import Payment, Refund
from payments.payment import refunds
from payments.payment.service import CASH, apply_capture, mark_failed
from payments.stored_value.service import MEMBERS, RECHARGE
from servicekit.consumer import HandlerRegistry

log = logging.getLogger(__name__)

handlers = HandlerRegistry()


async def _locked_payment(
    session: AsyncSession, envelope: EventEnvelope, payment_id: uuid.UUID
) -> Payment | None:
    if envelope.merchant_id is None:
        return None
    payment: Payment | None = await session.scalar(
        sa.select(Payment)
        .where(Payment.id == payment_id, Payment.merchant_id == envelope.merchant_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if payment is None:
        log.warning("%s names payment %s, unknown here", envelope.type, payment_id)
    return payment


@handlers.on("members.stored_value.debited")
async def debited(session: AsyncSession, envelope: EventEnvelope) -> None:
    answer = StoredValueDebited.model_validate(envelope.payload)
    payment = await _locked_payment(session, envelope, answer.payment_id)
    if payment is None or payment.provider != MEMBERS:
        return
    if answer.amount != Money.of(payment.amount, payment.currency):
        log.error("payment %s: members debited %s, not its amount", payment.id, answer.amount)
        return
    # The refunds this opens (the order was cancelled meanwhile) ask members in this same
    # transaction: nothing is left to carry out afterwards.
    await apply_capture(session, payment, None)


@handlers.on("members.stored_value.debit_refused")
async def debit_refused(session: AsyncSession, envelope: EventEnvelope) -> None:
    answer = StoredValueDebitRefused.model_validate(envelope.payload)
    payment = await _locked_payment(session, envelope, answer.payment_id)
    if payment is None or payment.provider != MEMBERS or payment.status != "pending":
        return
    await mark_failed(session, payment, answer.reason)


@handlers.on("members.stored_value.refunded")
async def refunded(session: AsyncSession, envelope: EventEnvelope) -> None:
    answer = StoredValueRefunded.model_validate(envelope.payload)
    payment = await _locked_payment(session, envelope, answer.payment_id)
    if payment is None or payment.provider != MEMBERS:
        return
    refund: Refund | None = await session.scalar(
        sa.select(Refund)
        .where(Refund.id == answer.refund_id, Refund.payment_id == payment.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if refund is None or refund.status != "pending":
        return
    await refunds.succeed(session, payment, refund, provider_reference=None)


@handlers.on("members.stored_value.recharge_refused")
async def recharge_refused(session: AsyncSession, envelope: EventEnvelope) -> None:
    """Money taken for an account that cannot take it goes back: cash at once (the till
    hands it back), a provider's through the reconciler, which asks the provider."""
    answer = StoredValueRechargeRefused.model_validate(envelope.payload)
    payment = await _locked_payment(session, envelope, answer.payment_id)
    if payment is None or payment.purpose != RECHARGE:
        return
    log.warning("recharge %s refused by members (%s): refunding it", payment.id, answer.reason)
    opened = await refunds.open_automatic(session, payment, answer.reason)
    if opened is not None and payment.provider == CASH:
        refund = await session.get(Refund, opened)
        assert refund is not None
        await refunds.succeed(session, payment, refund, provider_reference=None)
