"""Birthday benefits: the settings, the day it is for a merchant, the points multiplier.

The multiplier applies to points earned for an order paid in the member's birthday month,
reckoned in the merchant's birthday time zone (``Asia/Shanghai`` unless set). It multiplies
with the level's: ``points = floor(base * level_bp * birthday_bp / 10000²)``, rounded once.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from members.birthdays.models import BirthdayBenefit
from members.models import Member
from servicekit.errors import VersionMismatch

DEFAULT_TIMEZONE = "Asia/Shanghai"
ONE_X_BP = 10_000


async def get_benefit(session: AsyncSession, merchant_id: uuid.UUID) -> BirthdayBenefit:
    """The merchant's settings, or the defaults (version 0) when never set."""
    row = await session.get(BirthdayBenefit, merchant_id)
    if row is None:
        return BirthdayBenefit(
            merchant_id=merchant_id,
            points_multiplier_bp=ONE_X_BP,
            timezone=DEFAULT_TIMEZONE,
            version=0,
        )
    return row


async def set_benefit(
    session: AsyncSession,
    merchant_id: uuid.UUID,
    *,
    points_multiplier_bp: int,
    timezone: str,
    expected_version: int | None,
) -> BirthdayBenefit:
    row = await session.get(BirthdayBenefit, merchant_id, with_for_update=True)
    current = row.version if row is not None else 0
    if expected_version is not None and expected_version != current:
        raise VersionMismatch(current_version=current)
    if row is None:
        inserted = await session.scalar(
            pg_insert(BirthdayBenefit)
            .values(
                merchant_id=merchant_id,
                points_multiplier_bp=points_multiplier_bp,
                timezone=timezone,
                version=1,
            )
            .on_conflict_do_nothing()
            .returning(BirthdayBenefit.merchant_id)
        )
        if inserted is None:  # created concurrently
            raise VersionMismatch()
    else:
        row.points_multiplier_bp = points_multiplier_bp
        row.timezone = timezone
        row.version += 1
        row.updated_at = sa.func.now()
    await session.flush()
    saved = await session.get(BirthdayBenefit, merchant_id, populate_existing=True)
    assert saved is not None
    return saved


def local_date(at: datetime, timezone: str) -> date:
    return at.astimezone(ZoneInfo(timezone)).date()


async def today_for(
    session: AsyncSession, merchant_id: uuid.UUID, now: datetime | None = None
) -> date:
    benefit = await get_benefit(session, merchant_id)
    return local_date(now or datetime.now(UTC), benefit.timezone)


async def points_multiplier_bp(session: AsyncSession, member: Member, paid_at: datetime) -> int:
    if member.birthday is None:
        return ONE_X_BP
    benefit = await get_benefit(session, member.merchant_id)
    if local_date(paid_at, benefit.timezone).month != member.birthday.month:
        return ONE_X_BP
    return benefit.points_multiplier_bp
