"""Stored-value accounts: recharges with bonus tiers, debits for payments, refunds back.

Money never moves here on an HTTP request: payments takes the money (or the payment) and
asks by event, and each answer goes back by event through the outbox, in the transaction
of the change.

* **Recharge** (``payments.payment.recharge_succeeded``): the paid amount is credited as
  principal, and the highest bonus tier it reaches (threshold at most the amount) adds its
  bonus, once: a recharge of 250.00 with tiers 100 → +10 and 200 → +30 gets +30. Keyed by
  the payment id (one ``recharge`` entry, one ``bonus`` entry when the bonus is not zero).
* **Spend** (``payments.payment.debit_requested``): principal first, then bonus. The account
  row is locked and the update is conditional (each part at least what it gives), so two
  tills spending one account at once never take it below zero: one of them is refused with
  ``insufficient_balance``. The decision (debited or refused) is kept per payment id, so a
  request delivered twice is decided once.
* **Refund** (``payments.payment.credit_requested``): each part goes back to where it came
  from. Computed on cumulative totals: after refunds of ``R`` out of a spend of ``A`` that
  took ``P`` principal and ``B`` bonus, ``floor(B * R / A)`` bonus went back and the rest of
  ``R`` principal, so partial refunds in any number return exactly ``P`` and ``B`` once the
  whole spend is refunded. Keyed by the refund id.

* **Points as a tender** (``tender: points``): at the merchant's rate (``points_per_unit``
  points pay one major unit, 1 yuan), an amount costs ``ceil(amount * points_per_unit /
  100)`` points (rounded up: points never pay for more than they are worth). Refused with
  ``points_not_accepted`` when no rate is set, ``insufficient_points`` when short. The points
  ledger books a ``redemption``; a refund gives back ``floor(points * R / A)`` in all after
  refunds of ``R`` out of ``A`` (all of them once fully refunded) as ``redemption_refund``.

The balance (``principal + bonus``) always equals the sum of the member's ledger; every
event is applied within the envelope's merchant only.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import EventEnvelope
from contracts.events.members import (
    StoredValueAdjusted,
    StoredValueDebited,
    StoredValueDebitRefused,
    StoredValueRecharged,
    StoredValueRechargeRefused,
    StoredValueRefunded,
)
from contracts.events.payments import (
    RechargeSucceeded,
    StoredValueCreditRequested,
    StoredValueDebitRequested,
)
from contracts.ids import new_id
from contracts.money import Money
from contracts.registry import make_envelope
from members.models import Member, PointsEntry
from members.stored_value.models import (
    BonusRule,
    PointsTenderRate,
    StoredValueAccount,
    StoredValueDebit,
    StoredValueEntry,
)
from servicekit.auth import scoped_to_merchant
from servicekit.errors import (
    Conflict,
    FieldError,
    IllegalState,
    NotFound,
    ValidationFailed,
    VersionMismatch,
)
from servicekit.outbox import add_event

log = logging.getLogger(__name__)

PRODUCER = "members"
INSUFFICIENT_BALANCE = "insufficient_balance"
INSUFFICIENT_POINTS = "insufficient_points"
POINTS_NOT_ACCEPTED = "points_not_accepted"
MEMBER_NOT_FOUND = "member_not_found"
CURRENCY_MISMATCH = "currency_mismatch"


class LedgerConflict(Exception):
    """A ledger entry of this kind and source exists although it was checked under the
    account's lock: roll back (the retry finds it and does nothing)."""


@dataclass(frozen=True, slots=True)
class Balance:
    currency: str
    principal: int
    bonus: int

    @property
    def total(self) -> int:
        return self.principal + self.bonus


# --- bonus rules ---------------------------------------------------------------------------


async def bonus_rules(
    session: AsyncSession, merchant_id: uuid.UUID, currency: str | None = None
) -> list[BonusRule]:
    stmt = scoped_to_merchant(sa.select(BonusRule), BonusRule, merchant_id)
    if currency is not None:
        stmt = stmt.where(BonusRule.currency == currency)
    rows = await session.scalars(stmt.order_by(BonusRule.currency, BonusRule.threshold))
    return list(rows)


async def bonus_for(
    session: AsyncSession, merchant_id: uuid.UUID, amount: Money
) -> tuple[int, BonusRule | None]:
    """The bonus a recharge of ``amount`` earns: the highest tier it reaches, once."""
    rule: BonusRule | None = await session.scalar(
        scoped_to_merchant(sa.select(BonusRule), BonusRule, merchant_id)
        .where(BonusRule.currency == amount.currency, BonusRule.threshold <= amount.amount)
        .order_by(BonusRule.threshold.desc())
        .limit(1)
    )
    return (rule.bonus if rule is not None else 0), rule


def _tier_taken() -> Conflict:
    return Conflict("A bonus rule with this threshold exists.", code="bonus_tier_exists")


async def create_bonus_rule(
    session: AsyncSession, merchant_id: uuid.UUID, threshold: Money, bonus: Money
) -> BonusRule:
    inserted = await session.scalar(
        pg_insert(BonusRule)
        .values(
            id=new_id(),
            merchant_id=merchant_id,
            currency=threshold.currency,
            threshold=threshold.amount,
            bonus=bonus.amount,
            version=1,
        )
        .on_conflict_do_nothing(constraint="uq_stored_value_bonus_rules_tier")
        .returning(BonusRule.id)
    )
    if inserted is None:
        raise _tier_taken()
    return await get_bonus_rule(session, merchant_id, inserted)


async def get_bonus_rule(
    session: AsyncSession, merchant_id: uuid.UUID, rule_id: uuid.UUID, *, lock: bool = False
) -> BonusRule:
    stmt = scoped_to_merchant(sa.select(BonusRule), BonusRule, merchant_id).where(
        BonusRule.id == rule_id
    )
    if lock:
        stmt = stmt.with_for_update()
    rule: BonusRule | None = await session.scalar(stmt.execution_options(populate_existing=True))
    if rule is None:
        raise NotFound("Bonus rule not found.", code="bonus_rule_not_found")
    return rule


async def update_bonus_rule(
    session: AsyncSession,
    merchant_id: uuid.UUID,
    rule_id: uuid.UUID,
    *,
    threshold: Money,
    bonus: Money,
    version: int,
) -> BonusRule:
    rule = await get_bonus_rule(session, merchant_id, rule_id, lock=True)
    if rule.version != version:
        raise VersionMismatch(current_version=rule.version)
    rule.currency = threshold.currency
    rule.threshold = threshold.amount
    rule.bonus = bonus.amount
    rule.version += 1
    rule.updated_at = sa.func.now()
    try:
        async with session.begin_nested():
            await session.flush()
    except sa.exc.IntegrityError:
        raise _tier_taken() from None
    return await get_bonus_rule(session, merchant_id, rule_id)


async def delete_bonus_rule(
    session: AsyncSession, merchant_id: uuid.UUID, rule_id: uuid.UUID, *, version: int | None
) -> None:
    rule = await get_bonus_rule(session, merchant_id, rule_id, lock=True)
    if version is not None and rule.version != version:
        raise VersionMismatch(current_version=rule.version)
    await session.delete(rule)
    await session.flush()


# --- accounts ------------------------------------------------------------------------------


async def balance_of(session: AsyncSession, member: Member) -> Balance | None:
    account = await session.get(StoredValueAccount, member.id)
    if account is None or account.merchant_id != member.merchant_id:
        return None
    return Balance(account.currency, account.principal, account.bonus)


async def _member(
    session: AsyncSession, merchant_id: uuid.UUID | None, member_id: uuid.UUID
) -> Member | None:
    if merchant_id is None:
        return None
    member: Member | None = await session.scalar(
        scoped_to_merchant(sa.select(Member), Member, merchant_id).where(Member.id == member_id)
    )
    return member


async def _locked_account(
    session: AsyncSession, member: Member, *, create_in: str | None = None
) -> StoredValueAccount | None:
    """The member's account locked for this transaction; created empty in ``create_in``
    when there is none yet. The lock serializes every change of one account."""
    if create_in is not None:
        await session.execute(
            pg_insert(StoredValueAccount)
            .values(
                member_id=member.id,
                merchant_id=member.merchant_id,
                currency=create_in,
                principal=0,
                bonus=0,
            )
            .on_conflict_do_nothing()
        )
    account: StoredValueAccount | None = await session.scalar(
        sa.select(StoredValueAccount)
        .where(
            StoredValueAccount.member_id == member.id,
            StoredValueAccount.merchant_id == member.merchant_id,
        )
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return account


async def _entry(
    session: AsyncSession, merchant_id: uuid.UUID, kind: str, source_id: uuid.UUID
) -> StoredValueEntry | None:
    """The ledger entry of ``kind`` booked for ``source_id`` (unique per merchant), if any."""
    entry: StoredValueEntry | None = await session.scalar(
        sa.select(StoredValueEntry).where(
            StoredValueEntry.merchant_id == merchant_id,
            StoredValueEntry.kind == kind,
            StoredValueEntry.source_id == source_id,
        )
    )
    return entry


async def _entry_exists(
    session: AsyncSession, merchant_id: uuid.UUID, kind: str, source_id: uuid.UUID
) -> bool:
    return await _entry(session, merchant_id, kind, source_id) is not None


async def _book(
    session: AsyncSession,
    account: StoredValueAccount,
    *,
    kind: str,
    source_id: uuid.UUID,
    principal: int,
    bonus: int,
    payment_id: uuid.UUID | None,
    store_id: uuid.UUID | None,
    event_id: uuid.UUID | None,
    note: str | None = None,
) -> None:
    """Move the (locked) account by ``principal`` and ``bonus`` and append the entry. The
    update is conditional on each part staying non-negative, besides the database check."""
    moved = await session.execute(
        sa.update(StoredValueAccount)
        .where(
            StoredValueAccount.member_id == account.member_id,
            StoredValueAccount.principal + principal >= 0,
            StoredValueAccount.bonus + bonus >= 0,
        )
        .values(
            principal=StoredValueAccount.principal + principal,
            bonus=StoredValueAccount.bonus + bonus,
            updated_at=sa.func.now(),
        )
        .returning(StoredValueAccount.principal, StoredValueAccount.bonus)
        .execution_options(synchronize_session=False)
    )
    row = moved.one_or_none()
    if row is None:
        raise LedgerConflict(f"account {account.member_id} cannot move by {principal}/{bonus}")
    account.principal, account.bonus = int(row[0]), int(row[1])
    inserted = await session.scalar(
        pg_insert(StoredValueEntry)
        .values(
            id=new_id(),
            merchant_id=account.merchant_id,
            member_id=account.member_id,
            kind=kind,
            source_id=source_id,
            payment_id=payment_id,
            at_store_id=store_id,
            currency=account.currency,
            principal=principal,
            bonus=bonus,
            principal_after=account.principal,
            bonus_after=account.bonus,
            note=note,
            event_id=event_id,
        )
        .on_conflict_do_nothing(constraint="uq_stored_value_ledger_source")
        .returning(StoredValueEntry.id)
    )
    if inserted is None:
        raise LedgerConflict(f"{kind} {source_id} is already booked")


def _caused(envelope: EventEnvelope, payload: BaseModel, member_id: uuid.UUID) -> EventEnvelope:
    return make_envelope(
        payload,
        producer=PRODUCER,
        aggregate_id=member_id,
        merchant_id=envelope.merchant_id,
        store_id=envelope.store_id,
        correlation_id=envelope.correlation_id or envelope.event_id,
        causation_id=envelope.event_id,
    )


# --- recharges -----------------------------------------------------------------------------


async def credit_recharge(session: AsyncSession, envelope: EventEnvelope) -> str:
    """Credit a paid recharge once; ``credited``, ``duplicate`` or ``refused``."""
    paid = RechargeSucceeded.model_validate(envelope.payload)
    member = await _member(session, envelope.merchant_id, paid.member_id)

    async def refuse(reason: str) -> str:
        log.warning(
            "recharge %s for member %s refused: %s", paid.payment_id, paid.member_id, reason
        )
        refusal = StoredValueRechargeRefused(
            member_id=paid.member_id, payment_id=paid.payment_id, amount=paid.amount, reason=reason
        )
        await add_event(session, _caused(envelope, refusal, paid.member_id))
        return "refused"

    if member is None:
        return await refuse(MEMBER_NOT_FOUND)
    account = await _locked_account(session, member, create_in=paid.amount.currency)
    assert account is not None
    if await _entry_exists(session, member.merchant_id, "recharge", paid.payment_id):
        return "duplicate"
    if account.currency != paid.amount.currency:
        return await refuse(CURRENCY_MISMATCH)
    bonus, _ = await bonus_for(session, member.merchant_id, paid.amount)
    for kind, principal, bonus_part in (("recharge", paid.amount.amount, 0), ("bonus", 0, bonus)):
        if principal or bonus_part or kind == "recharge":
            await _book(
                session,
                account,
                kind=kind,
                source_id=paid.payment_id,
                principal=principal,
                bonus=bonus_part,
                payment_id=paid.payment_id,
                store_id=paid.store_id,
                event_id=envelope.event_id,
            )
    currency = account.currency
    recharged = StoredValueRecharged(
        member_id=member.id,
        payment_id=paid.payment_id,
        principal=paid.amount,
        bonus=Money.of(bonus, currency),
        balance=Money.of(account.principal + account.bonus, currency),
    )
    await add_event(session, _caused(envelope, recharged, member.id))
    return "credited"


# --- spending ------------------------------------------------------------------------------


def split_spend(principal: int, bonus: int, amount: int) -> tuple[int, int] | None:
    """What ``amount`` takes from principal and bonus (principal first); ``None`` when the
    account cannot cover it."""
    if amount <= 0 or principal + bonus < amount:
        return None
    from_principal = min(principal, amount)
    return from_principal, amount - from_principal


async def _decided(
    session: AsyncSession, merchant_id: uuid.UUID, payment_id: uuid.UUID, *, lock: bool = False
) -> StoredValueDebit | None:
    stmt = sa.select(StoredValueDebit).where(
        StoredValueDebit.merchant_id == merchant_id, StoredValueDebit.payment_id == payment_id
    )
    if lock:
        stmt = stmt.with_for_update()
    debit: StoredValueDebit | None = await session.scalar(
        stmt.execution_options(populate_existing=True)
    )
    return debit


async def _record_decision(
    session: AsyncSession,
    merchant_id: uuid.UUID,
    request: StoredValueDebitRequested,
    *,
    tender: str,
    reason: str | None,
    principal: int,
    bonus: int,
    points: int,
) -> bool:
    """Record the one decision on a payment's debit request (debited, or refused with
    ``reason``); ``False`` when another delivery recorded it first."""
    recorded = await session.scalar(
        pg_insert(StoredValueDebit)
        .values(
            merchant_id=merchant_id,
            payment_id=request.payment_id,
            member_id=request.member_id,
            order_id=request.order_id,
            tender=tender,
            currency=request.amount.currency,
            amount=request.amount.amount,
            status="refused" if reason else "debited",
            reason=reason,
            principal=principal,
            bonus=bonus,
            points=points,
            refunded_principal=0,
            refunded_bonus=0,
            refunded_points=0,
            refunded_amount=0,
        )
        .on_conflict_do_nothing()
        .returning(StoredValueDebit.payment_id)
    )
    return recorded is not None


async def debit_for_payment(session: AsyncSession, envelope: EventEnvelope) -> str:
    """Decide a payment's debit request once; ``debited``, ``refused`` or ``duplicate``."""
    request = StoredValueDebitRequested.model_validate(envelope.payload)
    merchant_id = envelope.merchant_id
    if merchant_id is None:
        log.warning("debit request %s without a merchant: ignored", request.payment_id)
        return "refused"
    if request.tender == "points":
        return await _debit_points(session, envelope, request, merchant_id)
    member = await _member(session, merchant_id, request.member_id)
    account = await _locked_account(session, member) if member is not None else None
    if await _decided(session, merchant_id, request.payment_id) is not None:
        return "duplicate"
    amount = request.amount
    reason: str | None = None
    split: tuple[int, int] | None = None
    if member is None:
        reason = MEMBER_NOT_FOUND
    elif account is not None and account.currency != amount.currency:
        reason = CURRENCY_MISMATCH
    else:
        split = (
            split_spend(account.principal, account.bonus, amount.amount)
            if account is not None
            else None
        )
        if split is None:
            reason = INSUFFICIENT_BALANCE
    from_principal, from_bonus = split or (0, 0)
    recorded = await _record_decision(
        session,
        merchant_id,
        request,
        tender="stored_value",
        reason=reason,
        principal=from_principal,
        bonus=from_bonus,
        points=0,
    )
    if not recorded:
        # Decided concurrently (only possible without an account to lock): that decision
        # and its answer stand.
        return "duplicate"
    if reason is not None:
        refusal = StoredValueDebitRefused(
            member_id=request.member_id, payment_id=request.payment_id, amount=amount, reason=reason
        )
        await add_event(session, _caused(envelope, refusal, request.member_id))
        return "refused"
    assert account is not None
    assert member is not None
    await _book(
        session,
        account,
        kind="spend",
        source_id=request.payment_id,
        principal=-from_principal,
        bonus=-from_bonus,
        payment_id=request.payment_id,
        store_id=request.store_id,
        event_id=envelope.event_id,
    )
    currency = account.currency
    debited = StoredValueDebited(
        member_id=member.id,
        payment_id=request.payment_id,
        amount=amount,
        principal=Money.of(from_principal, currency),
        bonus=Money.of(from_bonus, currency),
        balance=Money.of(account.principal + account.bonus, currency),
    )
    await add_event(session, _caused(envelope, debited, member.id))
    return "debited"


def refund_split(debit: StoredValueDebit, amount: int) -> tuple[int, int]:
    """What a refund of ``amount`` gives back to principal and bonus (see the module
    docstring); capped at what is left of the spend."""
    before = debit.refunded_principal + debit.refunded_bonus
    after = min(debit.amount, before + max(amount, 0))
    bonus_total = debit.bonus * after // debit.amount if debit.amount else 0
    principal_total = after - bonus_total
    return principal_total - debit.refunded_principal, bonus_total - debit.refunded_bonus


async def credit_refund(session: AsyncSession, envelope: EventEnvelope) -> str:
    """Give a refund of a stored-value payment back to the account once; ``refunded``,
    ``duplicate`` or ``unknown`` (no debit of that payment here)."""
    request = StoredValueCreditRequested.model_validate(envelope.payload)
    merchant_id = envelope.merchant_id
    if request.tender == "points":
        return await _credit_points(session, envelope, request)
    member = (
        await _member(session, merchant_id, request.member_id) if merchant_id is not None else None
    )
    account = await _locked_account(session, member) if member is not None else None
    debit = (
        await _decided(session, merchant_id, request.payment_id, lock=True)
        if merchant_id is not None
        else None
    )
    if (
        member is None
        or account is None
        or debit is None
        or debit.status != "debited"
        or debit.tender != "stored_value"
        or debit.member_id != member.id
    ):
        log.error(
            "refund %s of payment %s: no debit of member %s to give back to",
            request.refund_id,
            request.payment_id,
            request.member_id,
        )
        return "unknown"
    if await _entry_exists(session, debit.merchant_id, "refund", request.refund_id):
        return "duplicate"
    principal, bonus = refund_split(debit, request.amount.amount)
    await _book(
        session,
        account,
        kind="refund",
        source_id=request.refund_id,
        principal=principal,
        bonus=bonus,
        payment_id=request.payment_id,
        store_id=request.store_id,
        event_id=envelope.event_id,
    )
    debit.refunded_principal += principal
    debit.refunded_bonus += bonus
    debit.refunded_amount += principal + bonus
    await session.flush()
    currency = account.currency
    refunded = StoredValueRefunded(
        member_id=member.id,
        payment_id=request.payment_id,
        refund_id=request.refund_id,
        amount=Money.of(principal + bonus, currency),
        principal=Money.of(principal, currency),
        bonus=Money.of(bonus, currency),
        balance=Money.of(account.principal + account.bonus, currency),
    )
    await add_event(session, _caused(envelope, refunded, member.id))
    return "refunded"


# --- points as a tender --------------------------------------------------------------------


async def points_rate(session: AsyncSession, merchant_id: uuid.UUID) -> PointsTenderRate | None:
    return await session.get(PointsTenderRate, merchant_id, populate_existing=True)


async def set_points_rate(
    session: AsyncSession, merchant_id: uuid.UUID, *, points_per_unit: int, version: int | None
) -> PointsTenderRate:
    row = await session.get(PointsTenderRate, merchant_id, with_for_update=True)
    current = row.version if row is not None else 0
    if version is not None and version != current:
        raise VersionMismatch(current_version=current)
    if row is None:
        inserted = await session.scalar(
            pg_insert(PointsTenderRate)
            .values(merchant_id=merchant_id, points_per_unit=points_per_unit, version=1)
            .on_conflict_do_nothing()
            .returning(PointsTenderRate.merchant_id)
        )
        if inserted is None:  # set concurrently
            raise VersionMismatch()
    else:
        row.points_per_unit = points_per_unit
        row.version += 1
        row.updated_at = sa.func.now()
        await session.flush()
    rate = await points_rate(session, merchant_id)
    assert rate is not None
    return rate


def points_for(amount: Money, points_per_unit: int) -> int:
    """Points that pay ``amount``: rounded up, so points never pay for more than their worth."""
    unit: int = 10**amount.exponent
    needed: int = -(-amount.amount * points_per_unit // unit)
    return needed


async def _locked_member(
    session: AsyncSession, merchant_id: uuid.UUID, member_id: uuid.UUID
) -> Member | None:
    # The same lock the points ledger takes for awards and reversals.
    member: Member | None = await session.scalar(
        scoped_to_merchant(sa.select(Member), Member, merchant_id)
        .where(Member.id == member_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return member


async def _move_points(
    session: AsyncSession,
    member: Member,
    *,
    points: int,
    kind: str,
    source_id: uuid.UUID,
    order_id: uuid.UUID,
    amount: Money,
    event_id: uuid.UUID,
) -> None:
    """Move the (locked) member's points by ``points`` (conditional: never below zero) and
    book the entry in the points ledger."""
    moved = await session.execute(
        sa.update(Member)
        .where(Member.id == member.id, Member.points_balance + points >= 0)
        .values(points_balance=Member.points_balance + points)
        .returning(Member.points_balance)
        .execution_options(synchronize_session=False)
    )
    balance = moved.scalar_one_or_none()
    if balance is None:
        raise LedgerConflict(f"member {member.id} cannot move by {points} points")
    member.points_balance = int(balance)
    inserted = await session.scalar(
        pg_insert(PointsEntry)
        .values(
            id=new_id(),
            merchant_id=member.merchant_id,
            member_id=member.id,
            order_id=order_id,
            kind=kind,
            source_id=source_id,
            points=points,
            balance_after=member.points_balance,
            base_amount=amount.amount,
            currency=amount.currency,
            event_id=event_id,
        )
        .on_conflict_do_nothing()
        .returning(PointsEntry.id)
    )
    if inserted is None:
        raise LedgerConflict(f"{kind} {source_id} is already booked")


async def _debit_points(
    session: AsyncSession,
    envelope: EventEnvelope,
    request: StoredValueDebitRequested,
    merchant_id: uuid.UUID,
) -> str:
    member = await _locked_member(session, merchant_id, request.member_id)
    if await _decided(session, merchant_id, request.payment_id) is not None:
        return "duplicate"
    amount = request.amount
    rate = await points_rate(session, merchant_id)
    points = points_for(amount, rate.points_per_unit) if rate is not None else 0
    reason: str | None = None
    if member is None:
        reason = MEMBER_NOT_FOUND
    elif rate is None:
        reason = POINTS_NOT_ACCEPTED
    elif amount.amount <= 0 or member.points_balance < points:
        reason = INSUFFICIENT_POINTS
    recorded = await _record_decision(
        session,
        merchant_id,
        request,
        tender="points",
        reason=reason,
        principal=0,
        bonus=0,
        points=0 if reason else points,
    )
    if not recorded:
        return "duplicate"
    if reason is not None:
        refusal = StoredValueDebitRefused(
            tender="points",
            member_id=request.member_id,
            payment_id=request.payment_id,
            amount=amount,
            reason=reason,
        )
        await add_event(session, _caused(envelope, refusal, request.member_id))
        return "refused"
    assert member is not None
    await _move_points(
        session,
        member,
        points=-points,
        kind="redemption",
        source_id=request.payment_id,
        order_id=request.order_id,
        amount=amount,
        event_id=envelope.event_id,
    )
    zero = Money.zero(amount.currency)
    debited = StoredValueDebited(
        tender="points",
        member_id=member.id,
        payment_id=request.payment_id,
        amount=amount,
        principal=zero,
        bonus=zero,
        points=points,
        points_balance=member.points_balance,
    )
    await add_event(session, _caused(envelope, debited, member.id))
    return "debited"


async def _credit_points(
    session: AsyncSession, envelope: EventEnvelope, request: StoredValueCreditRequested
) -> str:
    merchant_id = envelope.merchant_id
    member = (
        await _locked_member(session, merchant_id, request.member_id)
        if merchant_id is not None
        else None
    )
    debit = (
        await _decided(session, merchant_id, request.payment_id, lock=True)
        if merchant_id is not None
        else None
    )
    if (
        member is None
        or debit is None
        or debit.status != "debited"
        or debit.tender != "points"
        or debit.member_id != member.id
    ):
        log.error(
            "refund %s of payment %s: no points redemption of member %s to give back",
            request.refund_id,
            request.payment_id,
            request.member_id,
        )
        return "unknown"
    already = await session.scalar(
        sa.select(PointsEntry.id).where(
            PointsEntry.member_id == member.id,
            PointsEntry.kind == "redemption_refund",
            PointsEntry.source_id == request.refund_id,
        )
    )
    if already is not None:
        return "duplicate"
    after = min(debit.amount, debit.refunded_amount + max(request.amount.amount, 0))
    points_total = debit.points * after // debit.amount if debit.amount else 0
    points = points_total - debit.refunded_points
    money = after - debit.refunded_amount
    await _move_points(
        session,
        member,
        points=points,
        kind="redemption_refund",
        source_id=request.refund_id,
        order_id=debit.order_id,
        amount=Money.of(money, debit.currency),
        event_id=envelope.event_id,
    )
    debit.refunded_points += points
    debit.refunded_amount = after
    await session.flush()
    zero = Money.zero(debit.currency)
    refunded = StoredValueRefunded(
        tender="points",
        member_id=member.id,
        payment_id=request.payment_id,
        refund_id=request.refund_id,
        amount=Money.of(money, debit.currency),
        principal=zero,
        bonus=zero,
        points=points,
        points_balance=member.points_balance,
    )
    await add_event(session, _caused(envelope, refunded, member.id))
    return "refunded"


# --- adjustments ---------------------------------------------------------------------------


async def adjust(
    session: AsyncSession,
    member: Member,
    *,
    principal: Money,
    bonus: Money,
    note: str,
) -> StoredValueEntry:
    """Correct an account by hand (an import's mistake, a goodwill credit): signed changes
    of each part, never below zero (``409 insufficient_balance``), booked as an
    ``adjustment`` with its reason."""
    if principal.currency != bonus.currency:
        raise ValidationFailed([FieldError("bonus.currency", "currency_mismatch", "Not the same.")])
    if principal.amount == 0 and bonus.amount == 0:
        raise ValidationFailed([FieldError("principal", "nothing_to_adjust", "Both are zero.")])
    account = await _locked_account(session, member, create_in=principal.currency)
    assert account is not None
    if account.currency != principal.currency:
        raise ValidationFailed(
            [FieldError("principal.currency", "currency_mismatch", f"In {account.currency}.")]
        )
    if account.principal + principal.amount < 0 or account.bonus + bonus.amount < 0:
        raise IllegalState(
            INSUFFICIENT_BALANCE,
            "The account does not hold what the adjustment takes.",
            principal=Money.of(account.principal, account.currency).model_dump(mode="json"),
            bonus=Money.of(account.bonus, account.currency).model_dump(mode="json"),
        )
    return await _book_by_hand(
        session,
        member,
        account,
        kind="adjustment",
        source_id=new_id(),
        principal=principal,
        bonus=bonus,
        note=note,
    )


async def _book_by_hand(
    session: AsyncSession,
    member: Member,
    account: StoredValueAccount,
    *,
    kind: str,
    source_id: uuid.UUID,
    principal: Money,
    bonus: Money,
    note: str,
) -> StoredValueEntry:
    """Book a change no payment caused (an adjustment, an opening balance) on the locked
    ``account`` and announce it as ``members.stored_value.adjusted`` under the entry's id."""
    await _book(
        session,
        account,
        kind=kind,
        source_id=source_id,
        principal=principal.amount,
        bonus=bonus.amount,
        payment_id=None,
        store_id=None,
        event_id=None,
        note=note,
    )
    entry = await _entry(session, member.merchant_id, kind, source_id)
    assert entry is not None
    adjusted = StoredValueAdjusted(
        member_id=member.id,
        adjustment_id=entry.id,
        principal=principal,
        bonus=bonus,
        balance=Money.of(account.principal + account.bonus, account.currency),
        note=note,
    )
    await add_event(
        session,
        make_envelope(
            adjusted, producer=PRODUCER, aggregate_id=member.id, merchant_id=member.merchant_id
        ),
    )
    return entry


# --- opening balances ----------------------------------------------------------------------

OPENING_ALREADY_IMPORTED = "opening_stored_value_already_imported"


class OpeningConflict(Exception):
    """The member's opening balance was imported before with other figures."""

    def __init__(self, booked: StoredValueEntry) -> None:
        super().__init__(f"opening balance already imported for member {booked.member_id}")
        self.booked = booked


async def book_opening(
    session: AsyncSession,
    member: Member,
    *,
    principal: Money,
    bonus: Money,
    import_id: uuid.UUID,
) -> bool:
    """Credit the balance carried over from another system, once per member, as an
    ``import`` entry (keyed by the member, so no second import can book another one);
    ``False`` when these very figures are booked already or both are zero.

    :class:`OpeningConflict` when other figures (or another currency) are booked,
    ``ValidationFailed`` ``currency_mismatch`` when the account holds another currency.
    Emits ``members.stored_value.adjusted`` (the ledger entry's id, the note naming the
    import), as any credit by staff."""
    if principal.currency != bonus.currency or principal.is_negative or bonus.is_negative:
        raise ValueError("an opening balance is two non-negative parts in one currency")
    booked = await _entry(session, member.merchant_id, "import", member.id)
    if booked is not None:
        if (booked.currency, booked.principal, booked.bonus) != (
            principal.currency,
            principal.amount,
            bonus.amount,
        ):
            raise OpeningConflict(booked)
        return False
    if principal.is_zero and bonus.is_zero:
        return False
    account = await _locked_account(session, member, create_in=principal.currency)
    assert account is not None
    if account.currency != principal.currency:
        raise ValidationFailed(
            [FieldError("stored_value_currency", CURRENCY_MISMATCH, f"In {account.currency}.")],
            f"the member's stored value is held in {account.currency}.",
            code=CURRENCY_MISMATCH,
        )
    await _book_by_hand(
        session,
        member,
        account,
        kind="import",
        source_id=member.id,
        principal=principal,
        bonus=bonus,
        note=f"opening balance imported by member import {import_id}",
    )
    return True
