"""Record the tenders and refunds a till took offline as payments and refunds.

``orders.order.offline_tendered`` becomes a succeeded payment under the till's payment id (a
QR or card payment keeps the provider's reference, so a later refund goes back the original
route; cash has no provider and no fee), and ``orders.order.offline_refunded`` a succeeded
refund of it. Both then announce themselves like any other payment or refund
(``payments.payment.succeeded`` / ``refunded``), so they count in the ledger, the fees and the
figures exactly like online ones.

Exactly once and in any order: both are keyed by the payment and refund ids (``ON CONFLICT DO
NOTHING``), on top of the inbox's event-id dedupe, and a refund event repeats the payment it
refunds, so a refund delivered before its payment (a replayed window) records the payment
first, and the payment's own event then finds it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from datetime import datetime

from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import EventEnvelope
from contracts.events.orders import OrderOfflineRefunded, OrderOfflineTendered
from contracts.money import Money
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

    async def record_payment(
        session: AsyncSession,
        merchant_id: uuid.UUID,
        *,
        payment_id: uuid.UUID,
        order_id: uuid.UUID,
        store_id: uuid.UUID,
        method: str,
        amount: Money,
        tendered: Money | None,
        provider_reference: str | None,
        occurred_at: datetime,
    ) -> None:
        cash = method == CASH
        rate = (
            0
            if cash
            else await settlement_service.fee_rate_bps(session, merchant_id, default_fee_rate_bps)
        )
        account = None if cash else await settlement_service.active_account(session, merchant_id)
        handed = tendered.amount if cash and tendered is not None else None
        payment = Payment(
            id=payment_id,
            merchant_id=merchant_id,
            store_id=store_id,
            order_id=order_id,
            purpose="order",
            member_id=None,
            method=method,
            provider=CASH if cash else method_providers.get(method, method),
            status="succeeded",
            currency=amount.currency,
            amount=amount.amount,
            tendered_amount=handed,
            change_amount=None if handed is None else handed - amount.amount,
            # Cash never passes through a provider: no fee, and it settles in the till.
            fee_rate_bps=rate,
            fee_amount=amount.percent_bps(rate).amount,
            refunded_amount=0,
            fee_refunded_amount=0,
            settlement_account_id=account.id if account is not None else None,
            provider_reference=provider_reference,
            qr_code=None,
            failure_reason=None,
            created_at=occurred_at,
            completed_at=occurred_at,
        )
        values = {c.key: getattr(payment, c.key) for c in Payment.__table__.columns}
        inserted = await session.scalar(
            pg.insert(Payment).values(values).on_conflict_do_nothing().returning(Payment.id)
        )
        if inserted is None:
            log.info("offline payment %s already recorded", payment_id)
            return
        await events.succeeded(session, payment)

    @handlers.on("orders.order.offline_tendered")
    async def offline_tendered(session: AsyncSession, envelope: EventEnvelope) -> None:
        tender = OrderOfflineTendered.model_validate(envelope.payload)
        await record_payment(
            session,
            _merchant(envelope),
            payment_id=tender.payment_id,
            order_id=tender.order_id,
            store_id=tender.store_id,
            method=tender.method,
            amount=tender.amount,
            tendered=tender.tendered,
            provider_reference=tender.provider_reference,
            occurred_at=tender.occurred_at,
        )

    @handlers.on("orders.order.offline_refunded")
    async def offline_refunded(session: AsyncSession, envelope: EventEnvelope) -> None:
        merchant_id = _merchant(envelope)
        given = OrderOfflineRefunded.model_validate(envelope.payload)
        await record_payment(
            session,
            merchant_id,
            payment_id=given.payment_id,
            order_id=given.order_id,
            store_id=given.store_id,
            method=given.payment.method,
            amount=given.payment.amount,
            tendered=given.payment.tendered,
            provider_reference=given.payment.provider_reference,
            occurred_at=given.payment.occurred_at,
        )
        payment = await session.get(
            Payment, given.payment_id, with_for_update=True, populate_existing=True
        )
        if payment is None or payment.merchant_id != merchant_id:
            raise PoisonMessage(
                f"offline refund {given.refund_id}: payment {given.payment_id} is another's"
            )
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
            created_at=given.occurred_at,
        )
        if payment.refunded_amount + refund.amount > payment.amount:
            raise PoisonMessage(f"offline refund {given.refund_id} exceeds its payment")
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
