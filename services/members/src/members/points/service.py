"""Points: the earning rule, awards on paid orders, reversals on refunds.

Earning: ``floor(paid_total * points_per_unit * level_bp * birthday_bp / (unit_amount *
10000²))``, by default 1 point per 100 minor units (1 yuan); ``level_bp`` is the points
multiplier of the level the member holds when the order is paid, ``birthday_bp`` the
birthday multiplier when it is paid in their birthday month (both 10000 = 1x). A paid order
then counts towards the member's lifetime figures, which may move them up a level and change
their rule-based tags. Reversal: after a refund the points reversed so far for an order are
``ceil(awarded * refunded_total / order_total)``, capped at what was awarded, and exactly the
award once the order is fully refunded; each refund reverses the difference with what was
already reversed. Rounding up means a customer never keeps points for money that went back,
and computing from cumulative totals means several partial refunds reverse the same as one
refund of their sum.

Order-independent: every refund is kept (``points_refunds``) even before the award exists,
and the reversal due is always recomputed from the award and the largest cumulative refund
seen, then the difference with what was already reversed is booked. A refund before its
payment, a replay, or refunds out of order all end in the same balance; nothing is booked
twice, and a reversal never exceeds the award. Every event is applied within the envelope's
merchant only.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import EventEnvelope
from contracts.events.members import PointsAwarded, PointsReversed
from contracts.events.orders import OrderPaid, OrderRefunded
from contracts.registry import make_envelope
from members.birthdays import service as birthdays
from members.levels import service as levels
from members.models import Member, PointsEntry, PointsRefund, PointsRule
from members.tags import service as tags
from servicekit.auth import scoped_to_merchant
from servicekit.errors import VersionMismatch
from servicekit.outbox import add_event

log = logging.getLogger(__name__)

PRODUCER = "members"
DEFAULT_POINTS_PER_UNIT = 1
DEFAULT_UNIT_AMOUNT = 100
ONE_X_BP = 10_000


@dataclass(frozen=True)
class Rule:
    points_per_unit: int
    unit_amount: int
    version: int
    is_default: bool

    def points_for(self, amount: int, multiplier: int = 1, scale: int = 1) -> int:
        """Points for ``amount`` times ``multiplier / scale``, rounded down once."""
        if amount <= 0:
            return 0
        return amount * self.points_per_unit * multiplier // (self.unit_amount * scale)


async def get_rule(session: AsyncSession, merchant_id: uuid.UUID) -> Rule:
    row = await session.get(PointsRule, merchant_id)
    if row is None:
        return Rule(DEFAULT_POINTS_PER_UNIT, DEFAULT_UNIT_AMOUNT, 0, True)
    return Rule(row.points_per_unit, row.unit_amount, row.version, False)


async def set_rule(
    session: AsyncSession,
    merchant_id: uuid.UUID,
    *,
    points_per_unit: int,
    unit_amount: int,
    expected_version: int | None,
) -> Rule:
    row = await session.get(PointsRule, merchant_id, with_for_update=True)
    current = row.version if row is not None else 0
    if expected_version is not None and expected_version != current:
        raise VersionMismatch(current_version=current)
    if row is None:
        inserted = await session.scalar(
            pg_insert(PointsRule)
            .values(
                merchant_id=merchant_id,
                points_per_unit=points_per_unit,
                unit_amount=unit_amount,
                version=1,
            )
            .on_conflict_do_nothing()
            .returning(PointsRule.version)
        )
        if inserted is None:  # created concurrently
            raise VersionMismatch()
        return Rule(points_per_unit, unit_amount, 1, False)
    row.points_per_unit = points_per_unit
    row.unit_amount = unit_amount
    row.version += 1
    row.updated_at = sa.func.now()
    await session.flush()
    return Rule(points_per_unit, unit_amount, row.version, False)


async def _member(
    session: AsyncSession, merchant_id: uuid.UUID | None, member_id: uuid.UUID
) -> Member | None:
    if merchant_id is None:
        return None
    # The lock serializes every points change of one member: awards and reversals of the
    # same order never interleave.
    member: Member | None = await session.scalar(
        scoped_to_merchant(sa.select(Member), Member, merchant_id)
        .where(Member.id == member_id)
        .with_for_update()
    )
    return member


async def _record(
    session: AsyncSession,
    member: Member,
    *,
    order_id: uuid.UUID,
    kind: str,
    source_id: uuid.UUID,
    points: int,
    base_amount: int,
    currency: str,
    event_id: uuid.UUID,
) -> int | None:
    """Insert a ledger entry and move the balance; ``None`` if the entry already exists."""
    balance = member.points_balance + points
    inserted = await session.scalar(
        pg_insert(PointsEntry)
        .values(
            merchant_id=member.merchant_id,
            member_id=member.id,
            order_id=order_id,
            kind=kind,
            source_id=source_id,
            points=points,
            balance_after=balance,
            base_amount=base_amount,
            currency=currency,
            event_id=event_id,
        )
        .on_conflict_do_nothing()
        .returning(PointsEntry.id)
    )
    if inserted is None:
        return None
    member.points_balance = balance
    await session.flush()
    return balance


def _caused(envelope: EventEnvelope, payload: PointsAwarded | PointsReversed) -> EventEnvelope:
    return make_envelope(
        payload,
        producer=PRODUCER,
        aggregate_id=payload.member_id,
        merchant_id=envelope.merchant_id,
        store_id=envelope.store_id,
        correlation_id=envelope.correlation_id or envelope.event_id,
        causation_id=envelope.event_id,
    )


async def award_for_paid_order(session: AsyncSession, envelope: EventEnvelope) -> int | None:
    """Points for a paid order with a member; how many, or ``None`` when nothing was done."""
    paid = OrderPaid.model_validate(envelope.payload)
    if paid.member_id is None:
        return None
    member = await _member(session, envelope.merchant_id, paid.member_id)
    if member is None:
        log.warning("order %s names member %s, unknown here", paid.order_id, paid.member_id)
        return None
    rule = await get_rule(session, member.merchant_id)
    level_bp = await levels.points_multiplier_bp(session, member)
    birthday_bp = await birthdays.points_multiplier_bp(session, member, paid.paid_at)
    # Both multipliers at once, so the award is rounded down a single time.
    points = rule.points_for(paid.total.amount, level_bp * birthday_bp, ONE_X_BP**2)
    balance = await _record(
        session,
        member,
        order_id=paid.order_id,
        kind="award",
        source_id=paid.order_id,
        points=points,
        base_amount=paid.total.amount,
        currency=paid.total.currency,
        event_id=envelope.event_id,
    )
    if balance is None:
        return None
    # The award is unique per order, so this order counts once towards the lifetime figures.
    await levels.count_paid_order(
        session, member, amount=paid.total.amount, points=points, paid_at=paid.paid_at
    )
    await tags.refresh(session, member, causation=envelope)
    if points:
        award = PointsAwarded(
            member_id=member.id, order_id=paid.order_id, points=points, balance=balance
        )
        await add_event(session, _caused(envelope, award))
        # Refunds that came before this payment take their share back now.
        await _settle_reversal(
            session, envelope, member, paid.order_id, currency=paid.total.currency
        )
    return points


def reversed_target(awarded: int, refunded_total: int, order_total: int, fully: bool) -> int:
    """Points that should have been reversed in all once ``refunded_total`` went back."""
    if fully or order_total <= 0 or refunded_total >= order_total:
        return awarded
    return min(awarded, -(-awarded * refunded_total // order_total))


async def reverse_for_refund(session: AsyncSession, envelope: EventEnvelope) -> int | None:
    """Take back the points of refunded money; how many, or ``None`` when nothing was done
    (also when the award is not known yet: the refund is kept and applied with it)."""
    refund = OrderRefunded.model_validate(envelope.payload)
    if refund.member_id is None:
        return None
    member = await _member(session, envelope.merchant_id, refund.member_id)
    if member is None:
        return None
    await session.execute(
        pg_insert(PointsRefund)
        .values(
            merchant_id=member.merchant_id,
            order_id=refund.order_id,
            refund_id=refund.refund_id,
            member_id=member.id,
            refunded_total=refund.refunded_total.amount,
            order_total=refund.order_total.amount,
            fully_refunded=refund.fully_refunded,
            event_id=envelope.event_id,
        )
        .on_conflict_do_nothing()
    )
    return await _settle_reversal(
        session,
        envelope,
        member,
        refund.order_id,
        currency=refund.amount.currency,
        source_id=refund.refund_id,
    )


async def _settle_reversal(
    session: AsyncSession,
    envelope: EventEnvelope,
    member: Member,
    order_id: uuid.UUID,
    *,
    currency: str,
    source_id: uuid.UUID | None = None,
) -> int | None:
    """Book whatever reversal is due for ``order_id`` and not booked yet, under the refund
    ``source_id`` (by default the largest refund seen); the member row is locked by the
    caller."""
    entries = scoped_to_merchant(sa.select(PointsEntry), PointsEntry, member.merchant_id).where(
        PointsEntry.member_id == member.id, PointsEntry.order_id == order_id
    )
    award = await session.scalar(entries.where(PointsEntry.kind == "award"))
    if award is None or award.points <= 0:
        return None
    refunds = (
        await session.scalars(
            scoped_to_merchant(sa.select(PointsRefund), PointsRefund, member.merchant_id)
            .where(PointsRefund.member_id == member.id, PointsRefund.order_id == order_id)
            .order_by(PointsRefund.refunded_total.desc(), PointsRefund.refund_id)
        )
    ).all()
    if not refunds:
        return None
    largest = refunds[0]
    target = reversed_target(
        award.points,
        largest.refunded_total,
        max(r.order_total for r in refunds),
        any(r.fully_refunded for r in refunds),
    )
    already = -sum(
        e.points for e in await session.scalars(entries.where(PointsEntry.kind == "reversal"))
    )
    points = target - already
    if points <= 0:
        return None
    source_id = source_id or largest.refund_id
    balance = await _record(
        session,
        member,
        order_id=order_id,
        kind="reversal",
        source_id=source_id,
        points=-points,
        base_amount=largest.refunded_total,
        currency=currency,
        event_id=envelope.event_id,
    )
    if balance is None:
        return None
    reversal = PointsReversed(
        member_id=member.id,
        order_id=order_id,
        refund_id=source_id,
        points=points,
        balance=balance,
    )
    await add_event(session, _caused(envelope, reversal))
    # A rule on the points balance may no longer be met.
    await tags.refresh(session, member, causation=envelope)
    return points
