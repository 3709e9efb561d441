"""Keep the coupon replica from ``members.coupon.*`` events.

A coupon's terms never change once issued, so a redelivered issue changes nothing. A void is
kept even when it arrives before its issue: the row then waits without terms, and the late
issue fills them in without making the coupon usable. An order already holding a coupon when
it is voided keeps it (the customer was quoted the discounted total); no new order can take
it.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import EventEnvelope
from contracts.events.members import CouponIssued, CouponVoided
from orders.catalog.handlers import merchant_of
from orders.models import Coupon
from servicekit.consumer import HandlerRegistry

handlers = HandlerRegistry()


@handlers.on("members.coupon.issued")
async def coupon_issued(session: AsyncSession, envelope: EventEnvelope) -> None:
    issued = CouponIssued.model_validate(envelope.payload)
    stmt = pg.insert(Coupon).values(
        merchant_id=merchant_of(envelope),
        coupon_id=issued.coupon_id,
        member_id=issued.member_id,
        terms=issued.model_dump(mode="json"),
    )
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=[Coupon.merchant_id, Coupon.coupon_id],
            set_={"terms": stmt.excluded.terms},
            where=Coupon.terms.is_(None),
        )
    )


@handlers.on("members.coupon.voided")
async def coupon_voided(session: AsyncSession, envelope: EventEnvelope) -> None:
    voided = CouponVoided.model_validate(envelope.payload)
    now = datetime.now(UTC)
    stmt = pg.insert(Coupon).values(
        merchant_id=merchant_of(envelope),
        coupon_id=voided.coupon_id,
        member_id=voided.member_id,
        terms=None,
        voided_at=now,
        void_reason=voided.reason,
    )
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=[Coupon.merchant_id, Coupon.coupon_id],
            set_={"voided_at": now, "void_reason": voided.reason, "updated_at": now},
            where=Coupon.voided_at.is_(None),
        )
    )
