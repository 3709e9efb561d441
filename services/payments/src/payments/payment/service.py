"""Taking payments, settling them from provider answers, and refunding them.

Every change of a payment's state writes its event to the outbox in the same transaction.
The order replica row is locked (``FOR UPDATE``) while a payment is taken, so two tills paying
the same order at once cannot together exceed what is outstanding.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import EventEnvelope
from contracts.events.orders import ReturnedLine
from contracts.events.payments import PaymentFailed, PaymentRefunded, PaymentSucceeded
from contracts.ids import new_id
from contracts.money import Money
from contracts.registry import make_envelope
from payments.config import Settings
from payments.models import OrderReplica, Payment, ProviderNotification, Refund
from payments.payment.schemas import PaymentCreate, RefundCreate
from payments.providers import Providers
from payments.providers.base import Notification, ProviderPayment, ProviderRefund
from payments.providers.sandbox import NAME as SANDBOX
from payments.providers.sandbox import parse_instructions
from payments.settlement import service as settlement
from servicekit.auth import Principal, scoped
from servicekit.errors import (
    FieldError,
    IllegalState,
    NotFound,
    Problem,
    ValidationFailed,
)
from servicekit.outbox import add_event

log = logging.getLogger(__name__)

PRODUCER = "payments"
CASH = "cash"
#: A payment still counts against the order's outstanding amount in these states.
_COUNTING = ("pending", "succeeded", "partially_refunded", "refunded")
_REFUNDABLE = ("succeeded", "partially_refunded")


def _invalid(field: str, code: str, message: str) -> ValidationFailed:
    return ValidationFailed([FieldError(field, code, message)])


def _money(amount: int, currency: str) -> Money:
    return Money.of(amount, currency)


async def _outstanding(session: AsyncSession, order: OrderReplica) -> int:
    taken = await session.scalar(
        sa.select(sa.func.coalesce(sa.func.sum(Payment.amount), 0)).where(
            Payment.merchant_id == order.merchant_id,
            Payment.order_id == order.order_id,
            Payment.status.in_(_COUNTING),
        )
    )
    return order.total_amount - int(taken or 0)


async def create_payment(
    session: AsyncSession,
    principal: Principal,
    body: PaymentCreate,
    *,
    providers: Providers,
    settings: Settings,
) -> Payment:
    order = await session.scalar(
        scoped(sa.select(OrderReplica), OrderReplica, principal)
        .where(OrderReplica.order_id == body.order_id)
        .with_for_update()
    )
    if order is None:
        # Perhaps only not replicated yet: transient, so never kept under an Idempotency-Key.
        raise NotFound("Order not found.", code="order_not_found", transient=True)
    if order.state != "open":
        raise IllegalState("order_not_payable", f"The order is {order.state}.", state=order.state)
    amount = body.amount
    if amount.currency != order.currency:
        raise _invalid("amount.currency", "currency_mismatch", f"The order is in {order.currency}.")
    if amount.amount <= 0:
        raise _invalid("amount.amount", "out_of_range", "The amount must be positive.")
    outstanding = await _outstanding(session, order)
    if outstanding <= 0:
        raise IllegalState("order_not_payable", "Nothing is left to pay on this order.")
    if amount.amount > outstanding:
        raise IllegalState(
            "amount_exceeds_outstanding",
            "The amount is more than what is left to pay.",
            outstanding=_money(outstanding, order.currency),
        )
    if body.method == CASH:
        return await _take_cash(session, order, body)
    if body.tendered is not None:
        raise _invalid("tendered", "cash_only", "Only cash payments carry a tendered amount.")
    return await _take_with_provider(session, order, body, providers=providers, settings=settings)


async def _take_cash(session: AsyncSession, order: OrderReplica, body: PaymentCreate) -> Payment:
    if body.sandbox is not None:
        raise _invalid("sandbox", "sandbox_not_applicable", "Cash has no provider.")
    tendered = body.tendered or body.amount
    if tendered.currency != body.amount.currency:
        raise _invalid("tendered.currency", "currency_mismatch", "Tendered in another currency.")
    if tendered.amount < body.amount.amount:
        raise _invalid("tendered.amount", "insufficient_tender", "Less than the amount was given.")
    now = datetime.now(UTC)
    payment = Payment(
        id=new_id(),
        merchant_id=order.merchant_id,
        store_id=order.store_id,
        order_id=order.order_id,
        method=CASH,
        provider=CASH,
        status="succeeded",
        currency=order.currency,
        amount=body.amount.amount,
        tendered_amount=tendered.amount,
        change_amount=tendered.amount - body.amount.amount,
        # Cash never passes through a provider: no fee, and it settles in the till.
        fee_rate_bps=0,
        fee_amount=0,
        refunded_amount=0,
        fee_refunded_amount=0,
        created_at=now,
        completed_at=now,
    )
    session.add(payment)
    await session.flush()
    await _emit_succeeded(session, payment)
    return payment


async def _take_with_provider(
    session: AsyncSession,
    order: OrderReplica,
    body: PaymentCreate,
    *,
    providers: Providers,
    settings: Settings,
) -> Payment:
    adapter = providers.for_method(body.method)
    instructions: dict[str, object] = {}
    if body.sandbox is not None:
        if not settings.sandbox_instructions_enabled:
            raise _invalid("sandbox", "sandbox_disabled", "Sandbox instructions are disabled.")
        if adapter.name != SANDBOX:
            raise _invalid("sandbox", "sandbox_not_applicable", "This method is not sandboxed.")
        try:
            instructions = parse_instructions(body.sandbox)
        except ValueError as exc:
            raise _invalid("sandbox", "invalid", str(exc)) from None
    rate = await settlement.fee_rate_bps(session, order.merchant_id, settings.default_fee_rate_bps)
    account = await settlement.active_account(session, order.merchant_id)
    payment = Payment(
        id=new_id(),
        merchant_id=order.merchant_id,
        store_id=order.store_id,
        order_id=order.order_id,
        method=body.method,
        provider=adapter.name,
        status="pending",
        currency=order.currency,
        amount=body.amount.amount,
        fee_rate_bps=rate,
        fee_amount=body.amount.percent_bps(rate).amount,
        refunded_amount=0,
        fee_refunded_amount=0,
        settlement_account_id=account.id if account is not None else None,
        created_at=datetime.now(UTC),
    )
    session.add(payment)
    await session.flush()
    try:
        result = await adapter.create(
            ProviderPayment(
                payment_id=payment.id,
                merchant_id=payment.merchant_id,
                store_id=payment.store_id,
                method=payment.method,
                amount=body.amount,
                settlement_account=account.account_number if account is not None else None,
                instructions=instructions,
            )
        )
    except Exception as exc:
        log.warning("provider %s refused to start payment %s: %s", adapter.name, payment.id, exc)
        raise Problem(
            502, "provider_unavailable", "The payment provider could not be reached; retry."
        ) from None
    payment.provider_reference = result.provider_reference
    payment.qr_code = result.qr_code
    if result.status == "succeeded":
        await mark_succeeded(session, payment, result.provider_reference)
    elif result.status == "failed":
        await mark_failed(session, payment, result.reason or "declined")
    await session.flush()
    return payment


# --- outcomes ------------------------------------------------------------------------------


async def mark_succeeded(
    session: AsyncSession, payment: Payment, provider_reference: str | None
) -> None:
    payment.status = "succeeded"
    payment.completed_at = datetime.now(UTC)
    if provider_reference is not None:
        payment.provider_reference = provider_reference
    await session.flush()
    await _emit_succeeded(session, payment)


async def mark_failed(session: AsyncSession, payment: Payment, reason: str) -> None:
    payment.status = "failed"
    payment.completed_at = datetime.now(UTC)
    payment.failure_reason = reason
    # Nothing was captured, so nothing is charged: the fee quoted at creation lapses.
    payment.fee_amount = 0
    await session.flush()
    event = PaymentFailed(
        payment_id=payment.id,
        order_id=payment.order_id,
        store_id=payment.store_id,
        method=payment.method,
        amount=_money(payment.amount, payment.currency),
        reason=reason,
    )
    await add_event(session, _envelope(event, payment))


async def _emit_succeeded(session: AsyncSession, payment: Payment) -> None:
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


# --- notifications -------------------------------------------------------------------------


async def apply_notification(
    session: AsyncSession, provider: str, notification: Notification
) -> str:
    """Apply a verified notification once; ``applied``, ``duplicate`` or ``already_final``."""
    payment = await session.scalar(
        sa.select(Payment)
        .where(Payment.id == notification.payment_id, Payment.provider == provider)
        .with_for_update()
    )
    if payment is None:
        raise NotFound("No such payment at this provider.", code="payment_not_found")
    if notification.amount != _money(payment.amount, payment.currency):
        raise Problem(400, "amount_mismatch", "The notified amount is not the payment's amount.")
    recorded = await session.scalar(
        pg_insert(ProviderNotification)
        .values(
            provider=provider,
            notification_id=notification.notification_id,
            payment_id=payment.id,
            status=notification.status,
            body=notification.body,
        )
        .on_conflict_do_nothing()
        .returning(ProviderNotification.notification_id)
    )
    if recorded is None:
        return "duplicate"
    if payment.status != "pending":
        if notification.status == "succeeded" and payment.status == "failed":
            # A capture after we gave up on the payment: money is held by the provider for a
            # payment the order does not count. Logged loudly for the reconciliation report.
            log.error(
                "provider %s reports %s for payment %s which is %s",
                provider,
                notification.status,
                payment.id,
                payment.status,
            )
        return "already_final"
    if notification.status == "succeeded":
        await mark_succeeded(session, payment, notification.provider_reference)
    else:
        await mark_failed(session, payment, notification.reason or "declined")
    return "applied"


# --- reads ---------------------------------------------------------------------------------


async def get_payment(
    session: AsyncSession, principal: Principal, payment_id: uuid.UUID, *, lock: bool = False
) -> Payment:
    stmt = scoped(sa.select(Payment), Payment, principal).where(Payment.id == payment_id)
    if lock:
        stmt = stmt.with_for_update()
    payment: Payment | None = await session.scalar(stmt)
    if payment is None:
        raise NotFound("Payment not found.", code="payment_not_found")
    return payment


# --- refunds -------------------------------------------------------------------------------


def fee_to_refund(payment: Payment, refund_amount: int) -> int:
    """The fee given back with a refund.

    The fee refunded so far is always the fee of the amount refunded so far, rounded half-up
    (``round(fee * refunded / amount)``); each refund returns the difference. Partial refunds
    therefore never drift, and once the whole amount is refunded the whole fee is back.
    """
    refunded_after = payment.refunded_amount + refund_amount
    numerator = 2 * payment.fee_amount * refunded_after + payment.amount
    fee_after = numerator // (2 * payment.amount)
    return fee_after - payment.fee_refunded_amount


async def refund_payment(
    session: AsyncSession,
    principal: Principal,
    payment_id: uuid.UUID,
    body: RefundCreate,
    *,
    providers: Providers,
) -> Refund:
    payment = await get_payment(session, principal, payment_id, lock=True)
    if payment.status not in _REFUNDABLE:
        raise IllegalState(
            "payment_not_refundable", f"The payment is {payment.status}.", state=payment.status
        )
    if body.amount.currency != payment.currency:
        raise _invalid("amount.currency", "currency_mismatch", f"Paid in {payment.currency}.")
    if body.amount.amount <= 0:
        raise _invalid("amount.amount", "out_of_range", "The amount must be positive.")
    refundable = payment.amount - payment.refunded_amount
    if body.amount.amount > refundable:
        raise IllegalState(
            "refund_exceeds_captured",
            "The refund is more than what is left of the payment.",
            refundable=_money(refundable, payment.currency),
        )
    refund_id = new_id()
    provider_reference: str | None = None
    if payment.provider != CASH:
        adapter = providers.named(payment.provider)
        try:
            result = await adapter.refund(
                ProviderRefund(
                    refund_id=refund_id,
                    payment_id=payment.id,
                    provider_reference=payment.provider_reference,
                    amount=body.amount,
                )
            )
        except Exception as exc:
            log.warning("provider %s refund of %s failed: %s", payment.provider, payment.id, exc)
            raise Problem(
                502, "provider_unavailable", "The payment provider could not be reached; retry."
            ) from None
        if result.status != "succeeded":
            raise IllegalState("refund_declined", result.reason or "The provider refused.")
        provider_reference = result.provider_reference
    fee_refunded = fee_to_refund(payment, body.amount.amount)
    refund = Refund(
        id=refund_id,
        payment_id=payment.id,
        merchant_id=payment.merchant_id,
        store_id=payment.store_id,
        order_id=payment.order_id,
        currency=payment.currency,
        amount=body.amount.amount,
        fee_refunded_amount=fee_refunded,
        status="succeeded",
        provider_reference=provider_reference,
        reason=body.reason,
        returned_lines=[line.model_dump(mode="json") for line in body.returned_lines],
        created_at=datetime.now(UTC),
    )
    session.add(refund)
    payment.refunded_amount += body.amount.amount
    payment.fee_refunded_amount += fee_refunded
    payment.status = (
        "refunded" if payment.refunded_amount == payment.amount else "partially_refunded"
    )
    await session.flush()
    event = PaymentRefunded(
        refund_id=refund.id,
        payment_id=payment.id,
        order_id=payment.order_id,
        store_id=payment.store_id,
        method=payment.method,
        amount=body.amount,
        fee_refunded=_money(fee_refunded, payment.currency),
        returned_lines=[ReturnedLine.model_validate(line) for line in refund.returned_lines],
    )
    await add_event(session, _envelope(event, payment))
    return refund


async def list_refunds(session: AsyncSession, payment: Payment) -> list[Refund]:
    rows = await session.scalars(
        sa.select(Refund)
        .where(Refund.payment_id == payment.id)
        .order_by(Refund.created_at, Refund.id)
    )
    return list(rows)
