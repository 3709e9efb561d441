"""Event consumers of stored value: recharges paid, debits and refunds asked for by payments."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import EventEnvelope
from members.stored_value import service
from servicekit.consumer import HandlerRegistry

handlers = HandlerRegistry()


@handlers.on("payments.payment.recharge_succeeded")
async def recharge_succeeded(session: AsyncSession, envelope: EventEnvelope) -> None:
    await service.credit_recharge(session, envelope)


@handlers.on("payments.payment.debit_requested")
async def debit_requested(session: AsyncSession, envelope: EventEnvelope) -> None:
    await service.debit_for_payment(session, envelope)


@handlers.on("payments.payment.credit_requested")
async def credit_requested(session: AsyncSession, envelope: EventEnvelope) -> None:
    await service.credit_refund(session, envelope)
