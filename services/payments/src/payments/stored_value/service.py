"""Stored value in payments: recharges (payments that are not sales) and ``stored_value`` as
a tender that members carries out, like an asynchronous provider.

* **Recharge** (``purpose: stored_value_recharge``): paid by any method, with no order. Cash
  succeeds in the request's transaction; a provider method goes through the same three steps
  as any provider payment. On success ``payments.payment.recharge_succeeded`` (never
  ``payments.payment.succeeded``: a recharge is not revenue, and orders has nothing to do
  with it) tells members to credit the account. If members refuses (the member is not the
  merchant's), the money goes back automatically.
* **Spend** (``method: stored_value``): the payment is created ``pending`` in the request's
  transaction together with ``payments.payment.debit_requested`` in the outbox; members
  debits (or refuses) once per payment id and answers; the answer settles the payment
  (:mod:`payments.stored_value.handlers`), and a success flows to orders as
  ``payments.payment.succeeded`` like any other tender. No provider is called, so the
  reconciler leaves these payments to members' answer, which the outbox guarantees.
* **Refund** of a stored-value payment: the refund is opened ``pending`` with
  ``payments.payment.credit_requested`` in the same transaction; it succeeds (and
  ``payments.payment.refunded`` goes out) when members confirms the credit.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from payments.config import Settings
from payments.models import Payment
from payments.payment import events
from payments.payment.schemas import PaymentCreate
from payments.providers import Providers
from servicekit.auth import Principal, require_store_access
from servicekit.db import Database
from servicekit.errors import FieldError, ValidationFailed

#: The provider name of payments members carries out (stored value).
MEMBERS = "members"
STORED_VALUE = "stored_value"
POINTS = "points"
#: Methods members carries out: the stored-value account, and points at the merchant's rate.
MEMBER_TENDERS = (STORED_VALUE, POINTS)
RECHARGE = "stored_value_recharge"
ORDER = "order"


def _invalid(field: str, code: str, message: str) -> ValidationFailed:
    return ValidationFailed([FieldError(field, code, message)])


def check_request(principal: Principal, body: PaymentCreate) -> None:
    """422 for fields that do not fit the payment's purpose and method."""
    errors: list[FieldError] = []
    if body.purpose == RECHARGE:
        if body.order_id is not None:
            errors.append(FieldError("order_id", "not_applicable", "A recharge pays no order."))
        if body.member_id is None:
            errors.append(FieldError("member_id", "missing", "The member to recharge."))
        if body.store_id is None:
            errors.append(FieldError("store_id", "missing", "The store taking the money."))
        if body.method in MEMBER_TENDERS:
            errors.append(
                FieldError("method", "not_for_recharge", "Stored value or points cannot recharge.")
            )
    else:
        if body.order_id is None:
            errors.append(FieldError("order_id", "missing", "The order to pay."))
        if body.store_id is not None:
            errors.append(FieldError("store_id", "not_applicable", "The order's store is used."))
        if body.method in MEMBER_TENDERS and body.member_id is None:
            errors.append(FieldError("member_id", "missing", "Whose stored value or points pay."))
        if body.method not in MEMBER_TENDERS and body.member_id is not None:
            errors.append(
                FieldError(
                    "member_id", "not_applicable", "Only stored value and points name a member."
                )
            )
    if body.method in MEMBER_TENDERS and body.tendered is not None:
        errors.append(FieldError("tendered", "cash_only", "Only cash carries a tendered amount."))
    if body.method in MEMBER_TENDERS and body.sandbox is not None:
        errors.append(
            FieldError("sandbox", "sandbox_not_applicable", "Stored value is not sandboxed.")
        )
    if body.amount.amount <= 0:
        errors.append(FieldError("amount.amount", "out_of_range", "The amount must be positive."))
    if errors:
        raise ValidationFailed(errors)
    if body.purpose == RECHARGE and body.store_id is not None:
        require_store_access(principal, body.store_id)


async def open_recharge(
    database: Database,
    session: AsyncSession,
    principal: Principal,
    body: PaymentCreate,
    payment_id: uuid.UUID,
    *,
    providers: Providers,
    settings: Settings,
) -> Payment:
    """Cash: taken now, in the request's transaction. Otherwise: committed ``pending`` in a
    transaction of its own, for the caller to ask the provider."""
    from payments.payment.service import CASH, find_payment, same_request, sandbox_instructions
    from payments.settlement import service as settlement

    assert body.member_id is not None
    assert body.store_id is not None
    now = datetime.now(UTC)
    common = {
        "id": payment_id,
        "merchant_id": principal.merchant_id,
        "store_id": body.store_id,
        "order_id": None,
        "purpose": RECHARGE,
        "member_id": body.member_id,
        "method": body.method,
        "currency": body.amount.currency,
        "amount": body.amount.amount,
        "refunded_amount": 0,
        "fee_refunded_amount": 0,
        "created_at": now,
    }
    if body.method == CASH:
        if body.sandbox is not None:
            raise _invalid("sandbox", "sandbox_not_applicable", "Cash has no provider.")
        tendered = body.tendered or body.amount
        if tendered.currency != body.amount.currency:
            raise _invalid(
                "tendered.currency", "currency_mismatch", "Tendered in another currency."
            )
        if tendered.amount < body.amount.amount:
            raise _invalid(
                "tendered.amount", "insufficient_tender", "Less than the amount was given."
            )
        payment = Payment(
            **common,
            provider=CASH,
            status="succeeded",
            tendered_amount=tendered.amount,
            change_amount=tendered.amount - body.amount.amount,
            fee_rate_bps=0,
            fee_amount=0,
            completed_at=now,
        )
        session.add(payment)
        await session.flush()
        await events.succeeded(session, payment)
        return payment
    if body.tendered is not None:
        raise _invalid("tendered", "cash_only", "Only cash payments carry a tendered amount.")
    adapter = providers.for_method(body.method)
    sandbox_instructions(body, adapter, settings)
    async with database.transaction() as opening:
        existing = await find_payment(opening, principal.merchant_id, payment_id)
        if existing is not None:
            same_request(existing, principal, body)
            return existing
        rate = await settlement.fee_rate_bps(
            opening, principal.merchant_id, settings.default_fee_rate_bps
        )
        account = await settlement.active_account(opening, principal.merchant_id)
        payment = Payment(
            **common,
            provider=adapter.name,
            status="pending",
            fee_rate_bps=rate,
            fee_amount=body.amount.percent_bps(rate).amount,
            settlement_account_id=account.id if account is not None else None,
        )
        opening.add(payment)
        await opening.flush()
    return payment


async def open_debit(
    session: AsyncSession,
    body: PaymentCreate,
    order_merchant: uuid.UUID,
    order_store: uuid.UUID,
    payment_id: uuid.UUID,
) -> Payment:
    """The pending stored-value (or points) payment of an order the caller checked and
    locked, and its debit request to members, in the same transaction."""
    assert body.order_id is not None
    assert body.member_id is not None
    payment = Payment(
        id=payment_id,
        merchant_id=order_merchant,
        store_id=order_store,
        order_id=body.order_id,
        purpose=ORDER,
        member_id=body.member_id,
        method=body.method,
        provider=MEMBERS,
        status="pending",
        currency=body.amount.currency,
        amount=body.amount.amount,
        # The money is the merchant's already: no provider, no fee.
        fee_rate_bps=0,
        fee_amount=0,
        refunded_amount=0,
        fee_refunded_amount=0,
        created_at=datetime.now(UTC),
    )
    session.add(payment)
    await session.flush()
    await events.debit_requested(session, payment)
    return payment
