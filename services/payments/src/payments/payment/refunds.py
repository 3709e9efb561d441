"""Refunds: asked for by staff, or made by payments itself for money an order cannot take.

The same three idempotent steps as a payment (see :mod:`payments.payment.service`):

1. *open*: in a short transaction, the order replica row and the payment are locked, the
   amount and the returned goods are checked, and the refund is inserted as ``pending`` with
   its amount reserved on the payment (``refunded_amount``), so two refunds at once can never
   exceed what was captured; committed, locks released.
2. *ask*: the provider refunds, with the refund's id as its idempotency key, no transaction
   open. The id comes from the client (``refund_id``) or is derived from the caller's
   ``Idempotency-Key``, and it is the primary key: a retried request maps onto the same row
   and the provider refunds once.
3. *apply*: ``succeeded`` emits ``payments.payment.refunded``; ``failed`` gives the
   reservation back. A provider error leaves the refund pending; the reconciler asks again.

A cash refund has no provider: it is done in one transaction.

Returned goods are checked at request time against the order's lines in the replica: only
products on the order, at most what was sold minus what earlier refunds already brought back.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.money import Money
from payments.models import OrderReplica, Payment, Refund
from payments.payment import events
from payments.payment.schemas import RefundCreate
from payments.payment.service import (
    CASH,
    OrderSource,
    derived_id,
    ensure_order_known,
    get_payment,
    key_reused,
)
from payments.providers import Providers
from payments.providers.base import ProviderRefund, ProviderRefundResult
from payments.stored_value.service import MEMBERS
from servicekit.auth import Principal
from servicekit.db import Database
from servicekit.errors import FieldError, IllegalState, NotFound, Problem, ValidationFailed

log = logging.getLogger(__name__)

_REFUNDABLE = ("succeeded", "partially_refunded")
_AUTOMATIC_NAMESPACE = uuid.UUID("2b8f0c1e-95d4-4f3a-8e0b-7d64a9c3f512")


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


def _refresh_status(payment: Payment) -> None:
    # A failed payment stays failed: the order never counted it, whatever went back.
    if payment.status == "failed":
        return
    if payment.refunded_amount == 0:
        payment.status = "succeeded"
    elif payment.refunded_amount == payment.amount:
        payment.status = "refunded"
    else:
        payment.status = "partially_refunded"


def _reserve(payment: Payment, refund: Refund) -> None:
    payment.refunded_amount += refund.amount
    payment.fee_refunded_amount += refund.fee_refunded_amount
    _refresh_status(payment)


def _release(payment: Payment, refund: Refund) -> None:
    payment.refunded_amount -= refund.amount
    payment.fee_refunded_amount -= refund.fee_refunded_amount
    _refresh_status(payment)


async def _lock_payment(session: AsyncSession, payment_id: uuid.UUID) -> Payment:
    payment: Payment | None = await session.scalar(
        sa.select(Payment)
        .where(Payment.id == payment_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if payment is None:
        raise NotFound("Payment not found.", code="payment_not_found")
    return payment


async def _lock_refund(session: AsyncSession, refund_id: uuid.UUID) -> Refund:
    refund: Refund | None = await session.scalar(
        sa.select(Refund)
        .where(Refund.id == refund_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if refund is None:
        raise NotFound("Refund not found.", code="refund_not_found")
    return refund


# --- staff refunds -------------------------------------------------------------------------


async def refund_payment(
    database: Database,
    session: AsyncSession,
    principal: Principal,
    payment_id: uuid.UUID,
    body: RefundCreate,
    *,
    idempotency_key: str,
    providers: Providers,
    orders: OrderSource,
) -> Refund:
    refund_id = body.refund_id or derived_id(principal, idempotency_key, "refund", str(payment_id))
    async with database.transaction() as lookup:
        payment = await get_payment(lookup, principal, payment_id)
        existing = await lookup.get(Refund, refund_id)
    if existing is not None:
        _same_request(existing, principal, payment, body)
    else:
        if payment.order_id is None:
            # A recharge is money on the member's account: giving it back is an account
            # matter (what of the bonus it earned?), not a refund of a sale.
            raise IllegalState(
                "recharge_not_refundable", "A stored-value recharge is not refunded here."
            )
        if body.returned_lines:
            await ensure_order_known(database, principal, payment.order_id, orders, need_lines=True)
        if payment.provider == MEMBERS:
            # Members puts it back on the account and confirms; the refund stays pending
            # until then, its request committed with it.
            refund = await _open(session, principal, payment, refund_id, body)
            if refund.status == "pending":
                await events.credit_requested(session, payment, refund)
            return refund
        if payment.provider == CASH:
            refund = await _open(session, principal, payment, refund_id, body)
            await succeed(session, payment, refund, provider_reference=None)
            return refund
        async with database.transaction() as opening:
            existing = await _open(opening, principal, payment, refund_id, body)
    if existing.status != "pending" or payment.provider == MEMBERS:
        # Members' credit request went out with the refund: its answer settles it.
        return existing
    result = await ask_provider(providers, payment, existing)
    return await apply_result(session, existing.id, result)


def _same_request(
    refund: Refund, principal: Principal, payment: Payment, body: RefundCreate
) -> None:
    if refund.merchant_id != principal.merchant_id:
        raise Problem(409, "refund_id_taken", "This refund_id is already in use.")
    lines = [line.model_dump(mode="json") for line in body.returned_lines]
    if (
        refund.payment_id != payment.id
        or refund.amount != body.amount.amount
        or refund.currency != body.amount.currency
        or refund.returned_lines != lines
    ):
        raise key_reused()


async def _open(
    session: AsyncSession,
    principal: Principal,
    payment: Payment,
    refund_id: uuid.UUID,
    body: RefundCreate,
) -> Refund:
    # Lock order everywhere: the order's replica row, then the payment, then the refund.
    order: OrderReplica | None = await session.scalar(
        sa.select(OrderReplica)
        .where(
            OrderReplica.merchant_id == payment.merchant_id,
            OrderReplica.order_id == payment.order_id,
        )
        .with_for_update()
    )
    payment = await _lock_payment(session, payment.id)
    concurrent = await session.get(Refund, refund_id)
    if concurrent is not None:
        _same_request(concurrent, principal, payment, body)
        return concurrent
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
            refundable=Money.of(refundable, payment.currency),
        )
    returned = [line.model_dump(mode="json") for line in body.returned_lines]
    if returned:
        await _check_returned(session, order, body)
    refund = Refund(
        id=refund_id,
        payment_id=payment.id,
        merchant_id=payment.merchant_id,
        store_id=payment.store_id,
        order_id=payment.order_id,
        currency=payment.currency,
        amount=body.amount.amount,
        fee_refunded_amount=fee_to_refund(payment, body.amount.amount),
        status="pending",
        reason=body.reason,
        returned_lines=returned,
        created_at=datetime.now(UTC),
    )
    session.add(refund)
    _reserve(payment, refund)
    await session.flush()
    return refund


def _invalid(field: str, code: str, message: str) -> ValidationFailed:
    return ValidationFailed([FieldError(field, code, message)])


async def _check_returned(
    session: AsyncSession, order: OrderReplica | None, body: RefundCreate
) -> None:
    if order is None or order.lines is None:
        raise Problem(503, "order_not_yet_known", "The order's lines are not known yet; retry.")
    sold: Counter[str] = Counter()
    for line in order.lines:
        sold[str(line["product_id"])] += int(line["quantity"])
    earlier = await session.scalars(
        sa.select(Refund.returned_lines).where(
            Refund.merchant_id == order.merchant_id,
            Refund.order_id == order.order_id,
            Refund.status != "failed",
        )
    )
    back: Counter[str] = Counter()
    for lines in earlier:
        for line in lines:
            back[str(line["product_id"])] += int(line["quantity"])
    asked: Counter[str] = Counter()
    for index, item in enumerate(body.returned_lines):
        product = str(item.product_id)
        if product not in sold:
            raise Problem(
                422,
                "returned_line_not_on_order",
                f"Product {product} is not on the order.",
                errors=[
                    FieldError(
                        f"returned_lines[{index}].product_id",
                        "returned_line_not_on_order",
                        "This product is not on the order.",
                    )
                ],
            )
        asked[product] += item.quantity
        left = sold[product] - back[product]
        if asked[product] > left:
            raise Problem(
                422,
                "returned_quantity_exceeds_sold",
                f"At most {max(left, 0)} of product {product} can still come back.",
                errors=[
                    FieldError(
                        f"returned_lines[{index}].quantity",
                        "returned_quantity_exceeds_sold",
                        "More than was sold, minus what already came back.",
                    )
                ],
                returnable=max(left, 0),
            )


# --- automatic refunds ---------------------------------------------------------------------


async def open_automatic(session: AsyncSession, payment: Payment, reason: str) -> uuid.UUID | None:
    """Open the refund of everything ``payment`` (locked by the caller) captured that is not
    refunded yet; one per payment and reason, so a repeated notification opens nothing new."""
    left = payment.amount - payment.refunded_amount
    if left <= 0:
        return None
    refund_id = uuid.uuid5(_AUTOMATIC_NAMESPACE, f"{payment.id}:{reason}")
    fee = fee_to_refund(payment, left)
    inserted = await session.scalar(
        pg_insert(Refund)
        .values(
            id=refund_id,
            payment_id=payment.id,
            merchant_id=payment.merchant_id,
            store_id=payment.store_id,
            order_id=payment.order_id,
            currency=payment.currency,
            amount=left,
            fee_refunded_amount=fee,
            status="pending",
            reason=reason,
            returned_lines=[],
            created_at=datetime.now(UTC),
        )
        .on_conflict_do_nothing()
        .returning(Refund.id)
    )
    if inserted is None:
        return None
    payment.refunded_amount += left
    payment.fee_refunded_amount += fee
    _refresh_status(payment)
    await session.flush()
    if payment.provider == MEMBERS:
        refund = await session.get(Refund, refund_id)
        assert refund is not None
        await events.credit_requested(session, payment, refund)
    return refund_id


# --- carrying a refund out -----------------------------------------------------------------


async def ask_provider(
    providers: Providers, payment: Payment, refund: Refund
) -> ProviderRefundResult:
    adapter = providers.named(payment.provider)
    try:
        return await adapter.refund(
            ProviderRefund(
                refund_id=refund.id,
                payment_id=payment.id,
                provider_reference=payment.provider_reference,
                amount=Money.of(refund.amount, refund.currency),
            )
        )
    except Exception as exc:
        log.warning("provider %s refund %s failed: %s", payment.provider, refund.id, exc)
        raise Problem(
            502,
            "provider_unavailable",
            "The payment provider could not be reached. The refund stays pending: retry with "
            "the same Idempotency-Key, or it is carried out automatically.",
            refund_id=str(refund.id),
        ) from None


async def apply_result(
    session: AsyncSession, refund_id: uuid.UUID, result: ProviderRefundResult
) -> Refund:
    """Apply the provider's answer to a pending refund, once."""
    refund = await session.get(Refund, refund_id)
    if refund is None:
        raise NotFound("Refund not found.", code="refund_not_found")
    payment = await _lock_payment(session, refund.payment_id)
    refund = await _lock_refund(session, refund_id)
    if refund.status != "pending":
        return refund
    if result.status == "succeeded":
        await succeed(session, payment, refund, provider_reference=result.provider_reference)
    else:
        refund.status = "failed"
        refund.failure_reason = result.reason or "refused"
        _release(payment, refund)
        log.error(
            "provider %s refused refund %s of payment %s: %s",
            payment.provider,
            refund.id,
            payment.id,
            refund.failure_reason,
        )
    await session.flush()
    return refund


async def succeed(
    session: AsyncSession, payment: Payment, refund: Refund, *, provider_reference: str | None
) -> None:
    refund.status = "succeeded"
    refund.provider_reference = provider_reference
    await session.flush()
    await events.refunded(session, payment, refund)


async def carry_out(database: Database, providers: Providers, refund_id: uuid.UUID) -> Refund:
    """Ask the provider for a pending refund and apply the answer (the background path:
    after a notification, and the reconciler)."""
    async with database.transaction() as session:
        refund = await session.get(Refund, refund_id)
        if refund is None:
            raise NotFound("Refund not found.", code="refund_not_found")
        payment = await session.get(Payment, refund.payment_id)
        assert payment is not None
    if refund.status != "pending" or payment.provider == MEMBERS:
        # Members answers a stored-value refund by event (its request is in the outbox).
        return refund
    if payment.provider == CASH:
        # Cash taken for an order that was cancelled meanwhile: the till hands it back.
        result = ProviderRefundResult(status="succeeded")
    else:
        result = await ask_provider(providers, payment, refund)
    async with database.transaction() as session:
        return await apply_result(session, refund_id, result)


async def carry_out_quietly(
    database: Database, providers: Providers, refund_ids: list[uuid.UUID]
) -> None:
    """:func:`carry_out` each refund; a failure leaves it pending for the reconciler."""
    for refund_id in refund_ids:
        try:
            await carry_out(database, providers, refund_id)
        except Exception as exc:
            log.warning("refund %s left for the reconciler: %s", refund_id, exc)


async def list_refunds(session: AsyncSession, payment: Payment) -> list[Refund]:
    rows = await session.scalars(
        sa.select(Refund)
        .where(Refund.payment_id == payment.id)
        .order_by(Refund.created_at, Refund.id)
    )
    return list(rows)
