"""Batch verification: checks that find what is wrong with members' data and say what to fix.

A check is an async function given the session, the merchant and, optionally, the members to
report on (those an import touched); it returns :class:`Issue` s, each with a stable code.
Checks are registered by name with :func:`check`, and the report runs every registered one,
so a new kind of data is verified by registering one more function::

    @check("gift_cards")
    async def gift_cards_vs_ledger(session, merchant_id, only): ...

Checks and their codes:

* ``phones``: ``duplicate_phone``, members whose phones are the same number once normalised
  to E.164 (data written before normalisation, or by another system); ``invalid_phone``, a
  phone no number plan has.
* ``points``: ``points_ledger_mismatch``, a points balance that is not the sum of the
  member's points ledger.
* ``birthdays``: ``birthday_in_future`` and ``birthday_before_1900``.
* ``stored_value``: ``stored_value_ledger_mismatch``, an account whose principal or bonus is
  not the sum of that part over the member's stored-value ledger; ``stored_value_negative``,
  a part below zero (the database refuses it, so only data written around it has one).
* ``coupons``: ``coupon_state_mismatch``, a coupon whose state contradicts the last
  ``orders.coupon.*`` step recorded for it (or that is reserved or redeemed with no step or no
  order); ``coupon_limit_exceeded``, a member holding more unvoided coupons of a template than
  its per-member limit.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from contracts import phones
from members.coupons.models import Coupon, CouponTemplate
from members.models import Member, MemberImportRow, PointsEntry
from members.stored_value.models import StoredValueAccount, StoredValueEntry
from servicekit.auth import scoped_to_merchant

EARLIEST_BIRTHDAY: Final = date(1900, 1, 1)


@dataclass(frozen=True, slots=True)
class Issue:
    member_id: uuid.UUID
    code: str
    detail: str
    fix: str
    data: dict[str, Any] = field(default_factory=dict)


Only = frozenset[uuid.UUID] | None
Check = Callable[[AsyncSession, uuid.UUID, Only], Awaitable[list[Issue]]]

CHECKS: dict[str, Check] = {}


def check(name: str) -> Callable[[Check], Check]:
    """Register a check under ``name`` (its issues are reported under it)."""

    def register(function: Check) -> Check:
        if name in CHECKS:
            raise ValueError(f"a check named {name} is already registered")
        CHECKS[name] = function
        return function

    return register


def _members(merchant_id: uuid.UUID, only: Only) -> sa.Select[Any]:
    stmt = scoped_to_merchant(sa.select(Member), Member, merchant_id)
    if only is not None:
        stmt = stmt.where(Member.id.in_(sorted(only)))
    return stmt


@check("phones")
async def duplicate_phones(
    session: AsyncSession, merchant_id: uuid.UUID, only: Only
) -> list[Issue]:
    # Every member of the merchant takes part: a member an import touched may share a phone
    # with one it did not.
    stored = (
        await session.execute(
            scoped_to_merchant(sa.select(Member.id, Member.phone), Member, merchant_id).order_by(
                Member.created_at, Member.id
            )
        )
    ).all()
    issues: list[Issue] = []
    by_number: dict[str, list[uuid.UUID]] = defaultdict(list)
    for member_id, phone in stored:
        try:
            by_number[phones.normalize_phone(phone)].append(member_id)
        except ValueError as exc:
            if only is None or member_id in only:
                issues.append(
                    Issue(
                        member_id,
                        "invalid_phone",
                        f"{phone!r}: {exc}.",
                        "Correct the phone, or remove the member.",
                        {"phone": phone},
                    )
                )
    for number, holders in by_number.items():
        if len(holders) < 2 or (only is not None and not only.intersection(holders)):
            continue
        for member_id in holders:
            if only is not None and member_id not in only:
                continue
            others = [str(h) for h in holders if h != member_id]
            issues.append(
                Issue(
                    member_id,
                    "duplicate_phone",
                    f"{len(holders)} members have the number {number}.",
                    "Merge these members into one, or correct the phone of the wrong ones.",
                    {"normalized_phone": number, "other_member_ids": others},
                )
            )
    return issues


@check("points")
async def points_vs_ledger(
    session: AsyncSession, merchant_id: uuid.UUID, only: Only
) -> list[Issue]:
    ledger = (
        sa.select(sa.func.coalesce(sa.func.sum(PointsEntry.points), 0))
        .where(PointsEntry.merchant_id == merchant_id, PointsEntry.member_id == Member.id)
        .scalar_subquery()
    )
    rows = await session.execute(
        _members(merchant_id, only)
        .with_only_columns(Member.id, Member.points_balance, ledger.label("ledger"))
        .where(Member.points_balance != ledger)
        .order_by(Member.created_at, Member.id)
    )
    return [
        Issue(
            r.id,
            "points_ledger_mismatch",
            f"points balance {r.points_balance}, ledger total {r.ledger}.",
            "Find the missing or extra movement; the ledger is the record, correct the "
            "balance to it.",
            {
                "balance": int(r.points_balance),
                "ledger_total": int(r.ledger),
                "difference": int(r.points_balance) - int(r.ledger),
            },
        )
        for r in rows
    ]


@check("stored_value")
async def stored_value_vs_ledger(
    session: AsyncSession, merchant_id: uuid.UUID, only: Only
) -> list[Issue]:
    def summed(part: InstrumentedAttribute[int]) -> sa.ScalarSelect[Any]:
        return (
            sa.select(sa.func.coalesce(sa.func.sum(part), 0))
            .where(
                StoredValueEntry.merchant_id == merchant_id,
                StoredValueEntry.member_id == StoredValueAccount.member_id,
            )
            .scalar_subquery()
        )

    principal_total = summed(StoredValueEntry.principal).label("principal_total")
    bonus_total = summed(StoredValueEntry.bonus).label("bonus_total")
    stmt = (
        scoped_to_merchant(
            sa.select(
                StoredValueAccount.member_id,
                StoredValueAccount.currency,
                StoredValueAccount.principal,
                StoredValueAccount.bonus,
                principal_total,
                bonus_total,
            ),
            StoredValueAccount,
            merchant_id,
        )
        .join(Member, Member.id == StoredValueAccount.member_id)
        .where(Member.merchant_id == merchant_id)
        .order_by(Member.created_at, Member.id)
    )
    if only is not None:
        stmt = stmt.where(StoredValueAccount.member_id.in_(sorted(only)))
    issues: list[Issue] = []
    for r in await session.execute(stmt):
        held = {"principal": int(r.principal), "bonus": int(r.bonus)}
        ledger = {"principal": int(r.principal_total), "bonus": int(r.bonus_total)}
        negative = [part for part, amount in held.items() if amount < 0]
        if negative:
            issues.append(
                Issue(
                    r.member_id,
                    "stored_value_negative",
                    f"{' and '.join(negative)} below zero ({r.currency} minor units: "
                    f"principal {held['principal']}, bonus {held['bonus']}).",
                    "Find the spend that overdrew the account; book an adjustment bringing "
                    "the part back to zero once the ledger explains it.",
                    {"currency": r.currency, **held},
                )
            )
        off = [part for part in held if held[part] != ledger[part]]
        if off:
            issues.append(
                Issue(
                    r.member_id,
                    "stored_value_ledger_mismatch",
                    f"{' and '.join(off)} off the ledger ({r.currency} minor units: "
                    + ", ".join(f"{p} {held[p]} vs ledger {ledger[p]}" for p in off)
                    + ").",
                    "Find the missing or extra movement; the ledger is the record, correct "
                    "the account to it.",
                    {
                        "currency": r.currency,
                        "parts": off,
                        "account": held,
                        "ledger_total": ledger,
                        "difference": {p: held[p] - ledger[p] for p in held},
                    },
                )
            )
    return issues


@check("birthdays")
async def invalid_birthdays(
    session: AsyncSession, merchant_id: uuid.UUID, only: Only
) -> list[Issue]:
    today = datetime.now(UTC).date()
    rows = await session.execute(
        _members(merchant_id, only)
        .with_only_columns(Member.id, Member.birthday)
        .where(sa.or_(Member.birthday > today, Member.birthday < EARLIEST_BIRTHDAY))
        .order_by(Member.created_at, Member.id)
    )
    issues = []
    for member_id, birthday in rows:
        assert birthday is not None  # the query compared it
        future = birthday > today
        what = "in the future" if future else "before 1900"
        issues.append(
            Issue(
                member_id,
                "birthday_in_future" if future else "birthday_before_1900",
                f"birthday {birthday.isoformat()} is {what}.",
                "Ask the member for their birthday, or clear it.",
                {"birthday": birthday.isoformat()},
            )
        )
    return issues


#: The states a coupon may be in after its last redemption step. A voided coupon stays voided
#: when an order reserves or releases it (a till that had not seen the void yet), but a
#: redemption is a sale that happened: it wins over the void.
STATES_AFTER_STEP: Final[dict[str | None, frozenset[str]]] = {
    None: frozenset({"issued", "voided"}),
    "reserved": frozenset({"reserved", "voided"}),
    "redeemed": frozenset({"redeemed"}),
    "released": frozenset({"issued", "voided"}),
}
_HELD = ("reserved", "redeemed")


def _contradicts_steps() -> sa.ColumnElement[bool]:
    return sa.or_(
        # Never stepped, yet held or used.
        sa.and_(Coupon.sequence == 0, Coupon.state.in_(_HELD)),
        *(
            sa.and_(Coupon.last_step == step, Coupon.state.not_in(sorted(states)))
            for step, states in STATES_AFTER_STEP.items()
            if step is not None
        ),
        sa.and_(Coupon.state.in_(_HELD), Coupon.order_id.is_(None)),
    )


@check("coupons")
async def coupons_vs_steps_and_limits(
    session: AsyncSession, merchant_id: uuid.UUID, only: Only
) -> list[Issue]:
    coupons = scoped_to_merchant(sa.select(Coupon), Coupon, merchant_id).where(_contradicts_steps())
    if only is not None:
        coupons = coupons.where(Coupon.member_id.in_(sorted(only)))
    issues: list[Issue] = []
    for coupon in await session.scalars(coupons.order_by(Coupon.issued_at, Coupon.id)):
        # A coupon stepped before the steps were recorded (sequence > 0, no last step) can
        # only be judged on its order.
        step = coupon.last_step if coupon.sequence > 0 else None
        if coupon.sequence > 0 and step is None:
            expected = "an order holding it"
        else:
            expected = " or ".join(sorted(STATES_AFTER_STEP[step]))
        if coupon.state in _HELD and coupon.order_id is None:
            why = f"it is {coupon.state} but names no order"
        elif step is None:
            why = f"it is {coupon.state} but orders never reserved it"
        else:
            why = f"it is {coupon.state} after orders last announced it {step}"
        issues.append(
            Issue(
                coupon.member_id,
                "coupon_state_mismatch",
                f"coupon {coupon.code}: {why} (step {coupon.sequence}; expected {expected}).",
                "Look the coupon's order up in orders: redeemed if it was paid, issued again "
                "if it was cancelled or fully refunded, reserved while it is open; void the "
                "coupon if it should not be used.",
                {
                    "coupon_id": str(coupon.id),
                    "code": coupon.code,
                    "state": coupon.state,
                    "last_step": step,
                    "sequence": coupon.sequence,
                    "order_id": None if coupon.order_id is None else str(coupon.order_id),
                },
            )
        )

    held = sa.func.count(Coupon.id)
    over = (
        scoped_to_merchant(
            sa.select(
                Coupon.member_id,
                CouponTemplate.id,
                CouponTemplate.name,
                CouponTemplate.per_member_limit,
                held.label("held"),
            ),
            Coupon,
            merchant_id,
        )
        .join(CouponTemplate, CouponTemplate.id == Coupon.template_id)
        .where(
            CouponTemplate.merchant_id == merchant_id,
            CouponTemplate.per_member_limit.is_not(None),
            Coupon.state != "voided",
        )
        .group_by(
            Coupon.member_id,
            CouponTemplate.id,
            CouponTemplate.name,
            CouponTemplate.per_member_limit,
        )
        .having(held > CouponTemplate.per_member_limit)
        .order_by(Coupon.member_id, CouponTemplate.id)
    )
    if only is not None:
        over = over.where(Coupon.member_id.in_(sorted(only)))
    for member_id, template_id, name, limit, count in await session.execute(over):
        assert limit is not None  # the query keeps templates with a limit
        issues.append(
            Issue(
                member_id,
                "coupon_limit_exceeded",
                f"holds {count} coupons of template {name!r}, limit {limit}.",
                "Void the extra unused coupons, or raise the template's per-member limit if "
                "it was lowered after they were issued.",
                {
                    "template_id": str(template_id),
                    "held": int(count),
                    "limit": int(limit),
                    "excess": int(count) - int(limit),
                },
            )
        )
    return issues


@dataclass(frozen=True, slots=True)
class Report:
    checks: list[str]
    members_checked: int
    issues: dict[uuid.UUID, list[tuple[str, Issue]]]


async def members_of_import(
    session: AsyncSession, merchant_id: uuid.UUID, import_id: uuid.UUID
) -> frozenset[uuid.UUID]:
    ids = await session.scalars(
        scoped_to_merchant(
            sa.select(MemberImportRow.member_id), MemberImportRow, merchant_id
        ).where(MemberImportRow.import_id == import_id, MemberImportRow.member_id.is_not(None))
    )
    return frozenset(i for i in ids if i is not None)


async def verify(
    session: AsyncSession,
    merchant_id: uuid.UUID,
    only: Only = None,
    checks: Sequence[str] | None = None,
) -> Report:
    names = list(checks) if checks is not None else sorted(CHECKS)
    found: dict[uuid.UUID, list[tuple[str, Issue]]] = defaultdict(list)
    for name in names:
        for issue in await CHECKS[name](session, merchant_id, only):
            found[issue.member_id].append((name, issue))
    checked = await session.scalar(
        _members(merchant_id, only).with_only_columns(sa.func.count()).order_by(None)
    )
    return Report(names, int(checked or 0), dict(found))
