"""Record the tenders and refunds a till took offline as payments and refunds.

``orders.order.offline_tendered`` becomes a succeeded payment under the till's payment id (a
QR or card payment keeps the provider's reference, so a later refund goes back the original
route; cash has no provider and no fee), and ``orders.order.offline_refunded`` a succeeded
refund of it. Both then announce themselves like any other payment or refund
(``payments.payment.succeeded`` / ``refunded``), so they count in the ledger, the fees and the
figures exactly like online ones. Keyed by the payment and refund ids (``ON CONFLICT DO
NOTHING``), on top of the inbox: an event delivered twice records nothing twice. Both events
ride the order's key, so a refund always arrives after the payment it refunds.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime

from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import EventEnvelope
from contracts.events.orders import OrderOfflineRefunded, OrderOfflineTendered
from payments.models import Payment, Refund
from payments.payment import events
from payments.payment.refunds import fee_to_refund
from payments.payment.service import CASH
from payments.settlement import service as settlement_service
from servicekit.consumer import HandlerRegistry, PoisonMessage

log = logging.getLogger(__name__)


def _merchant(envelope: EventEnvelope) -> uuid.UUID:
    if envelope.merchant_id is None:
        raise PoisonMessage(f"{envelope.type} {envelope.event_id} names no merchant")
    return envelope.merchant_id


def offline_handlers(
    method_providers: Mapping[str, str], default_fee_rate_bps: int
) -> HandlerRegistry:
    """The handlers; ``method_providers`` names the provider that completed a non-cash
    method's payment on the terminal (where its refunds go)."""
    handlers = HandlerRegistry()

    @handlers.on("orders.order.offline_tendered")
    async def offline_tendered(session: AsyncSession, envelope: EventEnvelope) -> None:
        merchant_id = _merchant(envelope)
        tender = OrderOfflineTendered.model_validate(envelope.payload)
        cash = tender.method == CASH
        rate = (
            0
            if cash
            else await settlement_service.fee_rate_bps(session, merchant_id, default_fee_rate_bps)
        )
        account = None if cash else await settlement_service.active_account(session, merchant_id)
        tendered = tender.tendered.amount if tender.tendered is not None else None
        payment = Payment(
            id=tender.payment_id,
            merchant_id=merchant_id,
            store_id=tender.store_id,
            order_id=tender.order_id,
            method=tender.method,
            provider=CASH if cash else method_providers.get(tender.method, tender.method),
            status="succeeded",
            currency=tender.amount.currency,
            amount=tender.amount.amount,
            tendered_amount=tendered if cash else None,
            change_amount=(tendered - tender.amount.amount)
            if cash and tendered is not None
            else None,
            fee_rate_bps=rate,
            fee_amount=tender.amount.percent_bps(rate).amount,
            refunded_amount=0,
            fee_refunded_amount=0,
            settlement_account_id=account.id if account is not None else None,
            provider_reference=tender.provider_reference,
            created_at=tender.occurred_at,
            completed_at=tender.occurred_at,
        )
        values = {c.key: getattr(payment, c.key) for c in Payment.__table__.columns}
        inserted = await session.scalar(
            pg.insert(Payment).values(values).on_conflict_do_nothing().returning(Payment.id)
        )
        if inserted is None:
            log.info("offline payment %s already recorded", tender.payment_id)
            return
        await events.succeeded(session, payment)

    @handlers.on("orders.order.offline_refunded")
    async def offline_refunded(session: AsyncSession, envelope: EventEnvelope) -> None:
        merchant_id = _merchant(envelope)
        given = OrderOfflineRefunded.model_validate(envelope.payload)
        payment = await session.get(Payment, given.payment_id, with_for_update=True)
        if payment is None or payment.merchant_id != merchant_id:
            # Its payment travels ahead of it on the same key; without it the event is wrong.
            raise PoisonMessage(f"offline refund {given.refund_id}: no payment {given.payment_id}")
        if payment.refunded_amount + given.amount.amount > payment.amount:
            raise PoisonMessage(f"offline refund {given.refund_id} exceeds its payment")
        refund = Refund(
            id=given.refund_id,
            payment_id=payment.id,
            merchant_id=merchant_id,
            store_id=payment.store_id,
            order_id=payment.order_id,
            currency=given.amount.currency,
            amount=given.amount.amount,
            fee_refunded_amount=fee_to_refund(payment, given.amount.amount),
            status="succeeded",
            provider_reference=None,
            reason=given.reason,
            failure_reason=None,
            returned_lines=[line.model_dump(mode="json") for line in given.returned_lines],
            created_at=given.occurred_at or datetime.now(UTC),
        )
        values = {c.key: getattr(refund, c.key) for c in Refund.__table__.columns}
        inserted = await session.scalar(
            pg.insert(Refund).values(values).on_conflict_do_nothing().returning(Refund.id)
        )
        if inserted is None:
            return
        payment.refunded_amount += refund.amount
        payment.fee_refunded_amount += refund.fee_refunded_amount
        payment.status = (
            "refunded" if payment.refunded_amount == payment.amount else "partially_refunded"
        )
        await session.flush()
        await events.refunded(session, payment, refund)

    return handlers
