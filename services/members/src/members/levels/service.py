"""Level definitions, lifetime figures and moving members up.

A member holds the highest-ranked level whose threshold their lifetime figure meets: lifetime
spend (the paid totals of their orders, in minor units) or lifetime points (points awarded,
whatever was spent or reversed since). Levels only go up automatically: refunds and points
spent never demote a member (the back office may still set a level by hand). The points
multiplier of the level a member holds when an order is paid applies to that order; the
order may then move the member up for the next one.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from members.levels.models import MemberLevel, MemberStats
from members.levels.schemas import LevelCreate, LevelUpdate
from members.models import Member
from servicekit.auth import scoped_to_merchant
from servicekit.errors import Conflict, NotFound, VersionMismatch

ONE_X_BP = 10_000


async def list_levels(session: AsyncSession, merchant_id: uuid.UUID) -> list[MemberLevel]:
    rows = await session.scalars(
        scoped_to_merchant(sa.select(MemberLevel), MemberLevel, merchant_id).order_by(
            MemberLevel.rank
        )
    )
    return list(rows)


async def get_level(
    session: AsyncSession, merchant_id: uuid.UUID, level_id: uuid.UUID, *, lock: bool = False
) -> MemberLevel:
    stmt = scoped_to_merchant(sa.select(MemberLevel), MemberLevel, merchant_id).where(
        MemberLevel.id == level_id
    )
    if lock:
        stmt = stmt.with_for_update()
    level = await session.scalar(stmt)
    if level is None:
        raise NotFound("Level not found.", code="level_not_found")
    return level


def _taken(exc: sa.exc.IntegrityError) -> Conflict:
    if "uq_member_levels_rank" in str(exc.orig):
        return Conflict("Another level of this merchant has this rank.", code="level_rank_taken")
    return Conflict("Another level of this merchant has this name.", code="level_name_taken")


async def create_level(
    session: AsyncSession, merchant_id: uuid.UUID, body: LevelCreate
) -> MemberLevel:
    level = MemberLevel(merchant_id=merchant_id, version=1, **body.model_dump())
    session.add(level)
    try:
        async with session.begin_nested():
            await session.flush()
    except sa.exc.IntegrityError as exc:
        raise _taken(exc) from None
    await session.refresh(level)
    return level


async def update_level(
    session: AsyncSession, merchant_id: uuid.UUID, level_id: uuid.UUID, body: LevelUpdate
) -> MemberLevel:
    level = await get_level(session, merchant_id, level_id, lock=True)
    if body.version != level.version:
        raise VersionMismatch(current_version=level.version)
    for name, value in body.model_dump(exclude_unset=True, exclude={"version"}).items():
        if value is not None:
            setattr(level, name, value)
    level.version += 1
    level.updated_at = sa.func.now()
    try:
        async with session.begin_nested():
            await session.flush()
    except sa.exc.IntegrityError as exc:
        raise _taken(exc) from None
    await session.refresh(level)
    return level


async def stats_of(session: AsyncSession, member: Member) -> MemberStats | None:
    return await session.get(MemberStats, member.id)


async def count_paid_order(
    session: AsyncSession, member: Member, *, amount: int, points: int, paid_at: datetime
) -> MemberStats:
    """Add one paid order to the member's lifetime figures; the caller makes sure each order
    is counted once (its points award is unique per order)."""
    await session.execute(
        pg_insert(MemberStats)
        .values(
            member_id=member.id,
            merchant_id=member.merchant_id,
            total_spend=amount,
            lifetime_points=points,
            visit_count=1,
            last_paid_at=paid_at,
        )
        .on_conflict_do_update(
            index_elements=[MemberStats.member_id],
            set_={
                "total_spend": MemberStats.total_spend + amount,
                "lifetime_points": MemberStats.lifetime_points + points,
                "visit_count": MemberStats.visit_count + 1,
                "last_paid_at": sa.func.greatest(MemberStats.last_paid_at, paid_at),
            },
        )
    )
    stats = await session.get(MemberStats, member.id, populate_existing=True)
    assert stats is not None
    return stats


async def held_level(session: AsyncSession, member: Member) -> MemberLevel | None:
    if member.level is None:
        return None
    level: MemberLevel | None = await session.scalar(
        scoped_to_merchant(sa.select(MemberLevel), MemberLevel, member.merchant_id).where(
            MemberLevel.name == member.level
        )
    )
    return level


async def level_up(session: AsyncSession, member: Member) -> bool:
    """Move ``member`` (locked by the caller) to the highest level they have reached, if it
    ranks above the one they hold; whether the level changed."""
    stats = await stats_of(session, member)
    spend = stats.total_spend if stats is not None else 0
    points = stats.lifetime_points if stats is not None else 0
    reached: MemberLevel | None = await session.scalar(
        scoped_to_merchant(sa.select(MemberLevel), MemberLevel, member.merchant_id)
        .where(
            sa.or_(
                sa.and_(MemberLevel.basis == "spend", MemberLevel.threshold <= spend),
                sa.and_(MemberLevel.basis == "points", MemberLevel.threshold <= points),
            )
        )
        .order_by(MemberLevel.rank.desc())
        .limit(1)
    )
    if reached is None or reached.name == member.level:
        return False
    held = await held_level(session, member)
    if held is not None and held.rank >= reached.rank:
        return False
    member.level = reached.name
    return True


async def points_multiplier_bp(session: AsyncSession, member: Member) -> int:
    held = await held_level(session, member)
    return held.points_multiplier_bp if held is not None else ONE_X_BP
