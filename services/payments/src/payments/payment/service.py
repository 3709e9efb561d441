"""Taking payments and settling them from provider answers.

A provider is never called inside a database transaction, and no row lock is held meanwhile.
Taking a provider payment is three steps, each idempotent, so a retry (or a crash at any
point) resumes instead of repeating:

1. *open*: in a short transaction of its own, the order replica row is locked (``FOR UPDATE``),
   what is outstanding is checked (pending payments count) and the payment is inserted as
   ``pending``, then committed and the lock released. Two tills paying the same order at once
   are therefore serialized on the replica row and can never exceed the order's total.
2. *ask*: the provider is called with no transaction open. The payment's id is its idempotency
   key at the provider; the id is derived from the caller's ``Idempotency-Key``, so a retried
   request finds the same row and asks the provider again for the same payment.
3. *apply*: the answer is applied in the request's own transaction, only if the payment is
   still pending (a notification or the reconciler may have settled it first).

A provider error leaves the committed pending row as it is (the provider may hold the
payment) and answers 502, which is never stored as the idempotent answer: a retry with the
same key resumes at step 2, and if nobody retries the reconciler settles the payment.

Cash never meets a provider: it is taken in one transaction.

Money captured for an order that cannot take it (a cancelled order, a payment that had
already failed) is refunded automatically: see :func:`apply_capture` and
:mod:`payments.payment.refunds`.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.money import Money
from payments.config import Settings
from payments.models import OrderReplica, Payment, ProviderNotification, SettlementAccount
from payments.payment import events
from payments.payment.schemas import PaymentCreate
from payments.providers import Providers
from payments.providers.base import (
    Notification,
    PaymentProvider,
    ProviderPayment,
    ProviderResult,
)
from payments.providers.sandbox import NAME as SANDBOX
from payments.providers.sandbox import parse_instructions
from payments.replica import service as replica
from payments.replica.read_through import OrdersClient, wait_briefly
from payments.settlement import service as settlement
from servicekit.auth import Principal, scoped
from servicekit.db import Database
from servicekit.errors import (
    FieldError,
    IllegalState,
    NotFound,
    Problem,
    ServiceUnavailable,
    ValidationFailed,
)

log = logging.getLogger(__name__)

CASH = "cash"
#: Reasons of a payment that failed, or of a refund payments made by itself.
ORDER_CANCELLED = "order_cancelled"
LATE_CAPTURE = "late_capture"
#: A payment still counts against the order's outstanding amount in these states.
_COUNTING = ("pending", "succeeded", "partially_refunded", "refunded")

_ID_NAMESPACE = uuid.UUID("6f1d7c52-3b1e-4c8e-9a55-0c6d2f1b9e41")


def derived_id(principal: Principal, key: str, purpose: str, *parts: str) -> uuid.UUID:
    """The id of what a request with ``key`` creates: the same for every retry of it within
    the caller's merchant (a till's retry may come with a fresh token, or from a colleague
    finishing the sale), different for every other merchant, key or purpose."""
    name = "\x1f".join((purpose, str(principal.merchant_id), key, *parts))
    return uuid.uuid5(_ID_NAMESPACE, name)


def _invalid(field: str, code: str, message: str) -> ValidationFailed:
    return ValidationFailed([FieldError(field, code, message)])


def _money(amount: int, currency: str) -> Money:
    return Money.of(amount, currency)


def key_reused() -> Problem:
    return Problem(
        422,
        "idempotency_key_reused",
        "This Idempotency-Key was used for a different request.",
    )


# --- the order, from the replica or read through --------------------------------------------


@dataclass(frozen=True, slots=True)
class OrderSource:
    """Where an order the replica has not heard of yet is read from, as the caller."""

    client: OrdersClient
    authorization: str | None
    wait_seconds: float


async def ensure_order_known(
    database: Database,
    principal: Principal,
    order_id: uuid.UUID,
    source: OrderSource,
    *,
    need_lines: bool = False,
) -> None:
    """Make sure the replica holds the order (with its lines when ``need_lines``): from the
    replica, else read through from orders, else after a brief wait for the replica.

    404 ``order_not_found`` only when orders says so; 503 ``order_not_yet_known`` when nobody
    can tell yet (transient: never stored as an idempotent answer)."""

    async def known() -> bool:
        async with database.transaction() as session:
            row = await replica.find(session, principal.merchant_id, order_id)
        return row is not None and (not need_lines or row.lines is not None)

    if await known():
        return
    lookup = await source.client.fetch(principal.merchant_id, order_id, source.authorization)
    if lookup.outcome == "found" and lookup.facts is not None:
        async with database.transaction() as session:
            await replica.apply(session, lookup.facts)
        return
    if lookup.outcome == "not_found":
        # Still transient: a till whose placement never arrived places the order again and
        # retries the payment under the same key, which must then be taken.
        raise NotFound("Order not found.", code="order_not_found", transient=True)
    if await wait_briefly(known, seconds=source.wait_seconds):
        return
    raise ServiceUnavailable(
        "The order is not known here yet and the orders service cannot be asked; retry.",
        code="order_not_yet_known",
        retry_after=1,
    )


async def _find_locked_order(
    session: AsyncSession, principal: Principal, order_id: uuid.UUID
) -> OrderReplica | None:
    order: OrderReplica | None = await session.scalar(
        scoped(sa.select(OrderReplica), OrderReplica, principal)
        .where(OrderReplica.order_id == order_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return order


async def _locked_order(
    session: AsyncSession, principal: Principal, order_id: uuid.UUID
) -> OrderReplica:
    order = await _find_locked_order(session, principal, order_id)
    if order is None:
        raise NotFound("Order not found.", code="order_not_found", transient=True)
    return order


async def _outstanding(session: AsyncSession, order: OrderReplica) -> int:
    taken = await session.scalar(
        sa.select(sa.func.coalesce(sa.func.sum(Payment.amount), 0)).where(
            Payment.merchant_id == order.merchant_id,
            Payment.order_id == order.order_id,
            Payment.status.in_(_COUNTING),
        )
    )
    return (order.total_amount or 0) - int(taken or 0)


async def _check_payable(session: AsyncSession, order: OrderReplica, body: PaymentCreate) -> None:
    if order.state != "open" or order.total_amount is None or order.currency is None:
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


# --- taking a payment ----------------------------------------------------------------------


async def find_payment(
    session: AsyncSession, merchant_id: uuid.UUID, payment_id: uuid.UUID, *, lock: bool = False
) -> Payment | None:
    stmt = sa.select(Payment).where(Payment.id == payment_id, Payment.merchant_id == merchant_id)
    if lock:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    payment: Payment | None = await session.scalar(stmt)
    return payment


def same_request(payment: Payment, principal: Principal, body: PaymentCreate) -> None:
    if not principal.can_see_store(payment.store_id):
        raise NotFound("Order not found.", code="order_not_found", transient=True)
    if (
        payment.order_id != body.order_id
        or payment.purpose != body.purpose
        or payment.member_id != body.member_id
        or (body.store_id is not None and payment.store_id != body.store_id)
        or payment.method != body.method
        or payment.amount != body.amount.amount
        or payment.currency != body.amount.currency
    ):
        raise key_reused()


def sandbox_instructions(
    body: PaymentCreate, adapter: PaymentProvider, settings: Settings
) -> dict[str, Any]:
    if body.sandbox is None:
        return {}
    if not settings.sandbox_instructions_enabled:
        raise _invalid("sandbox", "sandbox_disabled", "Sandbox instructions are disabled.")
    if adapter.name != SANDBOX:
        raise _invalid("sandbox", "sandbox_not_applicable", "This method is not sandboxed.")
    try:
        return parse_instructions(body.sandbox)
    except ValueError as exc:
        raise _invalid("sandbox", "invalid", str(exc)) from None


async def create_payment(
    database: Database,
    session: AsyncSession,
    principal: Principal,
    body: PaymentCreate,
    *,
    idempotency_key: str,
    providers: Providers,
    settings: Settings,
    orders: OrderSource,
) -> tuple[Payment, list[uuid.UUID]]:
    """Take a payment (see the module docstring). Returns the payment and the ids of refunds
    opened on the way, to be carried out at the provider once this transaction committed."""
    from payments.stored_value import service as stored_value  # builds on this module

    stored_value.check_request(principal, body)
    payment_id = derived_id(principal, idempotency_key, "payment")
    # Read in the request's own transaction: under READ COMMITTED it sees a pending row
    # another attempt committed, and a separate transaction would cost a connection and a
    # commit per payment.
    payment = await find_payment(session, principal.merchant_id, payment_id)
    if payment is not None:
        same_request(payment, principal, body)
    elif body.purpose == stored_value.RECHARGE:
        payment = await stored_value.open_recharge(
            database, session, principal, body, payment_id, providers=providers, settings=settings
        )
    elif body.method in stored_value.MEMBER_TENDERS:
        return await _take_stored_value(database, session, principal, body, payment_id, orders), []
    elif body.method == CASH:
        return await _take_cash(database, session, principal, body, payment_id, orders), []
    else:
        if body.tendered is not None:
            raise _invalid("tendered", "cash_only", "Only cash payments carry a tendered amount.")
        adapter = providers.for_method(body.method)
        sandbox_instructions(body, adapter, settings)
        assert body.order_id is not None
        await ensure_order_known(database, principal, body.order_id, orders)
        payment = await _open_pending(database, principal, body, payment_id, adapter, settings)
    if payment.status != "pending" or payment.provider in (CASH, stored_value.MEMBERS):
        return payment, []
    adapter = providers.named(payment.provider)
    request = await provider_request(
        database, payment, sandbox_instructions(body, adapter, settings)
    )
    result = await _ask_provider(adapter, request)
    return await apply_result(session, payment.id, result)


async def _take_cash(
    database: Database,
    session: AsyncSession,
    principal: Principal,
    body: PaymentCreate,
    payment_id: uuid.UUID,
    orders: OrderSource,
) -> Payment:
    if body.sandbox is not None:
        raise _invalid("sandbox", "sandbox_not_applicable", "Cash has no provider.")
    tendered = body.tendered or body.amount
    if tendered.currency != body.amount.currency:
        raise _invalid("tendered.currency", "currency_mismatch", "Tendered in another currency.")
    if tendered.amount < body.amount.amount:
        raise _invalid("tendered.amount", "insufficient_tender", "Less than the amount was given.")
    assert body.order_id is not None
    # The replica usually holds the order already: lock it in the request's transaction and
    # only read through (in transactions of its own) when it does not.
    order = await _find_locked_order(session, principal, body.order_id)
    if order is None:
        await ensure_order_known(database, principal, body.order_id, orders)
        order = await _locked_order(session, principal, body.order_id)
    await _check_payable(session, order, body)
    now = datetime.now(UTC)
    payment = Payment(
        id=payment_id,
        merchant_id=order.merchant_id,
        store_id=order.store_id,
        order_id=order.order_id,
        method=CASH,
        provider=CASH,
        status="succeeded",
        currency=body.amount.currency,
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
    await events.succeeded(session, payment)
    return payment


async def _take_stored_value(
    database: Database,
    session: AsyncSession,
    principal: Principal,
    body: PaymentCreate,
    payment_id: uuid.UUID,
    orders: OrderSource,
) -> Payment:
    """Like cash, in the request's transaction: the order locked and checked, then the
    pending payment and its debit request to members committed together."""
    from payments.stored_value import service as stored_value

    assert body.order_id is not None
    order = await _find_locked_order(session, principal, body.order_id)
    if order is None:
        await ensure_order_known(database, principal, body.order_id, orders)
        order = await _locked_order(session, principal, body.order_id)
    await _check_payable(session, order, body)
    return await stored_value.open_debit(
        session, body, order.merchant_id, order.store_id, payment_id
    )


async def _open_pending(
    database: Database,
    principal: Principal,
    body: PaymentCreate,
    payment_id: uuid.UUID,
    adapter: PaymentProvider,
    settings: Settings,
) -> Payment:
    assert body.order_id is not None
    async with database.transaction() as session:
        order = await _locked_order(session, principal, body.order_id)
        # A concurrent retry of the same request may have opened it while we waited.
        existing = await find_payment(session, principal.merchant_id, payment_id)
        if existing is not None:
            same_request(existing, principal, body)
            return existing
        await _check_payable(session, order, body)
        rate = await settlement.fee_rate_bps(
            session, order.merchant_id, settings.default_fee_rate_bps
        )
        account = await settlement.active_account(session, order.merchant_id)
        payment = Payment(
            id=payment_id,
            merchant_id=order.merchant_id,
            store_id=order.store_id,
            order_id=order.order_id,
            method=body.method,
            provider=adapter.name,
            status="pending",
            currency=body.amount.currency,
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
    return payment


async def provider_request(
    database: Database, payment: Payment, instructions: dict[str, Any]
) -> ProviderPayment:
    account_number: str | None = None
    if payment.settlement_account_id is not None:
        async with database.transaction() as session:
            account_number = await session.scalar(
                sa.select(SettlementAccount.account_number).where(
                    SettlementAccount.id == payment.settlement_account_id
                )
            )
    return ProviderPayment(
        payment_id=payment.id,
        merchant_id=payment.merchant_id,
        store_id=payment.store_id,
        method=payment.method,
        amount=_money(payment.amount, payment.currency),
        settlement_account=account_number,
        instructions=instructions,
    )


async def _ask_provider(adapter: PaymentProvider, request: ProviderPayment) -> ProviderResult:
    try:
        return await adapter.create(request)
    except Exception as exc:
        log.warning("provider %s could not start %s: %s", adapter.name, request.payment_id, exc)
        raise Problem(
            502,
            "provider_unavailable",
            "The payment provider could not be reached. The payment stays pending: retry "
            "with the same Idempotency-Key, or it is settled automatically.",
            payment_id=str(request.payment_id),
        ) from None


# --- outcomes ------------------------------------------------------------------------------


async def apply_result(
    session: AsyncSession, payment_id: uuid.UUID, result: ProviderResult
) -> tuple[Payment, list[uuid.UUID]]:
    """Apply a provider's answer to a payment, once: nothing changes unless it is pending
    (or, for a capture, failed: then the money goes back)."""
    payment = await session.scalar(
        sa.select(Payment)
        .where(Payment.id == payment_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if payment is None:
        raise NotFound("Payment not found.", code="payment_not_found")
    # A notification may have settled the payment before this answer came back; the QR code
    # and reference it carries are still the payment's.
    if payment.provider_reference is None and result.provider_reference is not None:
        payment.provider_reference = result.provider_reference
    if payment.qr_code is None and result.qr_code is not None:
        payment.qr_code = result.qr_code
    refunds: list[uuid.UUID] = []
    if result.status == "succeeded":
        refunds = await apply_capture(session, payment, result.provider_reference)
    elif result.status == "failed" and payment.status == "pending":
        await mark_failed(session, payment, result.reason or "declined")
    await session.flush()
    return payment, refunds


async def apply_capture(
    session: AsyncSession, payment: Payment, provider_reference: str | None
) -> list[uuid.UUID]:
    """The provider holds the money of ``payment`` (locked by the caller). A pending payment
    of an open order succeeds; money the order cannot take (its order was cancelled, or the
    payment had already failed) is refunded automatically. Returns the refunds opened."""
    from payments.payment import refunds  # refunds builds on this module

    if payment.status == "pending":
        order = (
            await replica.find(session, payment.merchant_id, payment.order_id)
            if payment.order_id is not None
            else None
        )
        if order is None or order.state != "cancelled":
            await mark_succeeded(session, payment, provider_reference)
            return []
        if provider_reference is not None:
            payment.provider_reference = provider_reference
        await mark_failed(session, payment, ORDER_CANCELLED)
        opened = await refunds.open_automatic(session, payment, ORDER_CANCELLED)
        return [opened] if opened is not None else []
    if payment.status == "failed":
        log.warning("payment %s captured after it failed: refunding it", payment.id)
        opened = await refunds.open_automatic(session, payment, LATE_CAPTURE)
        return [opened] if opened is not None else []
    return []


async def mark_succeeded(
    session: AsyncSession, payment: Payment, provider_reference: str | None
) -> None:
    payment.status = "succeeded"
    payment.completed_at = datetime.now(UTC)
    if provider_reference is not None:
        payment.provider_reference = provider_reference
    await session.flush()
    await events.succeeded(session, payment)


async def mark_failed(session: AsyncSession, payment: Payment, reason: str) -> None:
    payment.status = "failed"
    payment.completed_at = datetime.now(UTC)
    payment.failure_reason = reason
    # Nothing is kept, so nothing is charged: the fee quoted at creation lapses.
    payment.fee_amount = 0
    await session.flush()
    await events.failed(session, payment, reason)


# --- notifications -------------------------------------------------------------------------


async def apply_notification(
    session: AsyncSession, provider: str, notification: Notification
) -> tuple[str, list[uuid.UUID]]:
    """Apply a verified notification once; ``applied``, ``duplicate`` or ``already_final``,
    and the refunds it opened (a capture the order cannot take)."""
    payment = await session.scalar(
        sa.select(Payment)
        .where(Payment.id == notification.payment_id, Payment.provider == provider)
        .with_for_update()
        .execution_options(populate_existing=True)
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
        return "duplicate", []
    if notification.status == "succeeded":
        was = payment.status
        opened = await apply_capture(session, payment, notification.provider_reference)
        return ("applied" if was == "pending" else "already_final"), opened
    if payment.status != "pending":
        return "already_final", []
    await mark_failed(session, payment, notification.reason or "declined")
    return "applied", []


# --- reads ---------------------------------------------------------------------------------


async def get_payment(
    session: AsyncSession, principal: Principal, payment_id: uuid.UUID, *, lock: bool = False
) -> Payment:
    stmt = scoped(sa.select(Payment), Payment, principal).where(Payment.id == payment_id)
    if lock:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    payment: Payment | None = await session.scalar(stmt)
    if payment is None:
        raise NotFound("Payment not found.", code="payment_not_found")
    return payment
