"""Shifts: opening with a float, closing with the counted amounts, and the report of expected
against counted per method.

Every tender is counted in its order's shift; a refund in the shift of the till that paid it
out (the order's shift when none). An offline order joins the shift of its till that was open
when it was taken, found from its ``occurred_at``; a shift may be opened and closed offline
and synced, so its id, ``opened_at`` and ``closed_at`` may come from the till.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.money import Money
from orders.models import Order, Refund, Shift, Tender, refund_of_a_tender
from orders.numbering.service import business_day, store_zone
from orders.shifts.schemas import MethodFigures, ShiftClose, ShiftOpen, ShiftOut, ShiftReport
from servicekit.auth import Principal, require_store_access
from servicekit.errors import Conflict, FieldError, IllegalState, NotFound, ValidationFailed

CASH = "cash"
#: How far ahead of our clock a till may date an opening or a close.
CLOCK_SKEW_SECONDS = 300


def _digest(payload: dict[str, object]) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _unknown_shift(field: str = "shift_id") -> ValidationFailed:
    return ValidationFailed(
        [FieldError(field, "unknown_shift", "No such shift in this store.")],
        "No such shift in this store.",
        code="unknown_shift",
    )


def _future(field: str, moment: datetime, now: datetime) -> None:
    if (moment - now).total_seconds() > CLOCK_SKEW_SECONDS:
        raise ValidationFailed(
            [FieldError(field, "occurred_in_future", "is ahead of the server's clock.")],
            code="occurred_in_future",
        )


def shift_out(shift: Shift) -> ShiftOut:
    return ShiftOut(
        id=shift.id,
        store_id=shift.store_id,
        till_id=shift.till_id,
        cashier_id=shift.cashier_id,
        business_day=shift.business_day,
        status=shift.status,  # type: ignore[arg-type]
        opening_float=Money.of(shift.opening_float, shift.currency),
        opened_at=shift.opened_at,
        closed_at=shift.closed_at,
        version=shift.version,
    )


async def get_visible(
    session: AsyncSession, principal: Principal, shift_id: uuid.UUID, *, for_update: bool = False
) -> Shift:
    stmt = sa.select(Shift).where(Shift.merchant_id == principal.merchant_id, Shift.id == shift_id)
    if for_update:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    shift = (await session.execute(stmt)).scalar_one_or_none()
    if shift is None or not principal.can_see_store(shift.store_id):
        raise NotFound("Shift not found.")
    return shift


async def open_shift(
    session: AsyncSession, principal: Principal, body: ShiftOpen
) -> tuple[Shift, bool]:
    """Open the shift; ``(shift, False)`` when this very opening was recorded before."""
    from orders.order.service import ensure_store_writable, lock_order_key

    require_store_access(principal, body.store_id)
    digest = _digest(body.model_dump(mode="json"))
    # The shift id shares the order keys' lock space: a resend racing itself waits here.
    await lock_order_key(session, principal.merchant_id, body.id)
    existing = await session.get(Shift, (principal.merchant_id, body.id))
    if existing is not None:
        if existing.request_hash != digest or not principal.can_see_store(existing.store_id):
            raise Conflict(
                "A shift with this id exists with other contents.", code="shift_id_conflict"
            )
        return existing, False
    now = datetime.now(UTC)
    opened_at = body.opened_at or now
    _future("opened_at", opened_at, now)
    store = await ensure_store_writable(
        session, principal.merchant_id, body.store_id, must_be_known=True
    )
    already = await session.scalar(
        sa.select(Shift.id).where(
            Shift.merchant_id == principal.merchant_id,
            Shift.store_id == body.store_id,
            Shift.till_id == body.till_id,
            Shift.status == "open",
        )
    )
    if already is not None:
        raise IllegalState(
            "shift_already_open",
            "This till has an open shift: close it first.",
            open_shift_id=already,
        )
    shift = Shift(
        merchant_id=principal.merchant_id,
        id=body.id,
        store_id=body.store_id,
        till_id=body.till_id,
        cashier_id=principal.subject,
        business_day=business_day(opened_at, store_zone(store)),
        status="open",
        currency=body.opening_float.currency,
        opening_float=body.opening_float.amount,
        opened_at=opened_at,
        closed_at=None,
        counted=None,
        request_hash=digest,
        version=1,
    )
    session.add(shift)
    await session.flush()
    return shift, True


async def close_shift(
    session: AsyncSession, principal: Principal, shift_id: uuid.UUID, body: ShiftClose
) -> Shift:
    """Close with the counted amounts; closing again with the same counts answers the same."""
    shift = await get_visible(session, principal, shift_id, for_update=True)
    counted = {c.method: c.amount for c in body.counted}
    errors = [
        FieldError(f"counted[{i}].amount", "currency_mismatch", "wrong currency.")
        for i, c in enumerate(body.counted)
        if c.amount.currency != shift.currency
    ]
    if len(counted) != len(body.counted):
        errors.append(FieldError("counted", "duplicate_method", "one entry per method."))
    if CASH not in counted:
        errors.append(FieldError("counted", "cash_not_counted", "the cash must be counted."))
    if errors:
        raise ValidationFailed(errors)
    amounts = {method: money.amount for method, money in counted.items()}
    if shift.status == "closed":
        if shift.counted == amounts:
            return shift
        raise IllegalState("shift_closed", "The shift was closed with other counts.")
    now = datetime.now(UTC)
    closed_at = body.closed_at or now
    _future("closed_at", closed_at, now)
    if closed_at < shift.opened_at:
        raise ValidationFailed(
            [FieldError("closed_at", "closed_before_opened", "is before the shift opened.")]
        )
    shift.status = "closed"
    shift.closed_at = closed_at
    shift.counted = amounts
    shift.version += 1
    await session.flush()
    return shift


async def shift_for_order(
    session: AsyncSession,
    merchant_id: uuid.UUID,
    store_id: uuid.UUID,
    *,
    till_id: str | None,
    shift_id: uuid.UUID | None,
    occurred_at: datetime | None,
) -> Shift | None:
    """The shift an order joins: the one it names (in this store), else its till's open one.
    Nothing when neither is given. An order placed online must name an open shift."""
    if shift_id is not None:
        shift = await session.get(Shift, (merchant_id, shift_id))
        if shift is None or shift.store_id != store_id:
            raise _unknown_shift()
        if occurred_at is None and shift.status != "open":
            raise IllegalState("shift_closed", "The shift is closed.", shift_id=shift_id)
        return shift
    if till_id is None:
        return None
    return (
        await session.execute(
            sa.select(Shift).where(
                Shift.merchant_id == merchant_id,
                Shift.store_id == store_id,
                Shift.till_id == till_id,
                Shift.status == "open",
            )
        )
    ).scalar_one_or_none()


async def shifts_of_till(
    session: AsyncSession, merchant_id: uuid.UUID, store_id: uuid.UUID, till_id: str
) -> list[Shift]:
    rows = await session.execute(
        sa.select(Shift)
        .where(
            Shift.merchant_id == merchant_id,
            Shift.store_id == store_id,
            Shift.till_id == till_id,
        )
        .order_by(Shift.opened_at.desc())
    )
    return list(rows.scalars())


def shift_at(shifts: Sequence[Shift], moment: datetime) -> Shift | None:
    """The shift (of one till, newest first) that was open at ``moment``."""
    for shift in shifts:
        if shift.opened_at <= moment and (shift.closed_at is None or moment < shift.closed_at):
            return shift
    return None


async def refund_shift(session: AsyncSession, order: Order) -> uuid.UUID | None:
    """The shift a refund recorded online is paid out of: the order's till's open shift, else
    the order's own."""
    if order.till_id is not None:
        open_now = await session.scalar(
            sa.select(Shift.id).where(
                Shift.merchant_id == order.merchant_id,
                Shift.store_id == order.store_id,
                Shift.till_id == order.till_id,
                Shift.status == "open",
            )
        )
        if open_now is not None:
            return open_now
    return order.shift_id


async def report(session: AsyncSession, shift: Shift) -> ShiftReport:
    currency = shift.currency
    tenders = {
        method: (int(amount), int(count))
        for method, amount, count in (
            await session.execute(
                sa.select(Tender.method, sa.func.sum(Tender.amount), sa.func.count())
                .where(
                    Tender.merchant_id == shift.merchant_id,
                    Tender.shift_id == shift.id,
                    Tender.currency == currency,
                )
                .group_by(Tender.method)
            )
        ).all()
    }
    refunds = {
        method: int(amount)
        for method, amount in (
            await session.execute(
                sa.select(Refund.method, sa.func.sum(Refund.amount))
                .where(
                    Refund.merchant_id == shift.merchant_id,
                    Refund.shift_id == shift.id,
                    Refund.currency == currency,
                    # Money given back for a failed payment never entered the drawer's figures.
                    refund_of_a_tender(),
                )
                .group_by(Refund.method)
            )
        ).all()
    }
    order_count, sales = (
        await session.execute(
            sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(Order.total), 0)).where(
                Order.merchant_id == shift.merchant_id,
                Order.shift_id == shift.id,
                Order.status != "cancelled",
            )
        )
    ).one()
    counted = shift.counted or {}
    methods = sorted({CASH, *tenders, *refunds, *counted})
    figures = []
    total_over_short: int | None = None
    for method in methods:
        taken, count = tenders.get(method, (0, 0))
        given_back = refunds.get(method, 0)
        expected = taken - given_back + (shift.opening_float if method == CASH else 0)
        counted_amount = counted.get(method)
        over_short = None if counted_amount is None else counted_amount - expected
        if over_short is not None:
            total_over_short = (total_over_short or 0) + over_short
        figures.append(
            MethodFigures(
                method=method,  # type: ignore[arg-type]
                tenders=Money.of(taken, currency),
                tender_count=count,
                refunds=Money.of(given_back, currency),
                expected=Money.of(expected, currency),
                counted=None if counted_amount is None else Money.of(counted_amount, currency),
                over_short=None if over_short is None else Money.of(over_short, currency),
            )
        )
    return ShiftReport(
        **shift_out(shift).model_dump(),
        order_count=int(order_count),
        sales=Money.of(int(sales), currency),
        by_method=figures,
        over_short=None if total_over_short is None else Money.of(total_over_short, currency),
    )
