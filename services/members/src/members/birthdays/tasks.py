"""The periodic sweep of the members process: birthday coupons, levels and rule tags.

Every ``benefits_sweep_interval`` seconds each replica running the consumers walks the
members of every merchant that has something to sweep for (an active birthday template, an
active tag rule, a level), a chunk per transaction, each chunk locked in id order. For each
member it issues this year's birthday coupons when it is their birthday month (in the
merchant's birthday time zone) and re-evaluates their level and rule tags
(:func:`members.tags.service.refresh`). Two replicas sweeping at once are safe: the locks
serialize them member by member, a birthday coupon is unique per template, member and year,
and a refresh that finds nothing to change writes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from members.birthdays.service import today_for
from members.coupons.models import CouponTemplate
from members.coupons.service import issue_automatic, templates_flagged
from members.levels.models import MemberLevel
from members.models import Member
from members.tags import service as tags
from members.tags.models import TagRule
from servicekit.auth import scoped_to_merchant
from servicekit.db import Database

log = logging.getLogger(__name__)

CHUNK = 200


async def merchants_to_sweep(session: AsyncSession) -> list[uuid.UUID]:
    query = sa.union(
        sa.select(CouponTemplate.merchant_id).where(
            CouponTemplate.active.is_(True), CouponTemplate.issue_on_birthday.is_(True)
        ),
        sa.select(TagRule.merchant_id).where(TagRule.active.is_(True)),
        sa.select(MemberLevel.merchant_id),
    )
    return list(await session.scalars(query))


async def sweep_chunk(
    session: AsyncSession,
    merchant_id: uuid.UUID,
    after: uuid.UUID | None,
    now: datetime,
    limit: int = CHUNK,
) -> uuid.UUID | None:
    """Sweep the next ``limit`` members after ``after``; the last id swept, ``None`` at the
    end. Counts: birthday coupons issued are logged."""
    today = await today_for(session, merchant_id, now)
    birthday_templates = await templates_flagged(session, merchant_id, "birthday")
    stmt = scoped_to_merchant(sa.select(Member), Member, merchant_id)
    if after is not None:
        stmt = stmt.where(Member.id > after)
    members = (await session.scalars(stmt.order_by(Member.id).limit(limit).with_for_update())).all()
    issued = 0
    for member in members:
        if birthday_templates and member.birthday and member.birthday.month == today.month:
            issued += await issue_automatic(
                session,
                member,
                birthday_templates,
                source="birthday",
                source_key=str(today.year),
                now=now,
            )
        await tags.refresh(session, member, today=today)
    if issued:
        log.info("issued %d birthday coupons for merchant %s", issued, merchant_id)
    return members[-1].id if len(members) == limit else None


async def sweep_merchant(
    database: Database, merchant_id: uuid.UUID, now: datetime | None = None
) -> None:
    now = now or datetime.now(UTC)
    after: uuid.UUID | None = None
    while True:
        async with database.transaction() as session:
            after = await sweep_chunk(session, merchant_id, after, now)
        if after is None:
            return


async def sweep(database: Database, now: datetime | None = None) -> None:
    async with database.transaction() as session:
        merchants = await merchants_to_sweep(session)
    for merchant_id in merchants:
        try:
            await sweep_merchant(database, merchant_id, now)
        except Exception:
            log.exception("sweeping the members of merchant %s failed", merchant_id)


async def run_sweeps(database: Database, interval: float) -> None:
    while True:
        # First wait: a replica starting up does not add a sweep to its start-up load.
        await asyncio.sleep(interval)
        try:
            await sweep(database)
        except Exception:
            log.exception("member sweep failed; retrying")


async def start_sweeps(runtime: Any) -> None:
    interval = float(getattr(runtime.settings, "benefits_sweep_interval", 900.0))
    # Background work belongs with the consumers, not with the API or relay deployments.
    if interval > 0 and runtime.settings.run_consumers:
        runtime.extras["member_sweeps"] = asyncio.create_task(
            run_sweeps(runtime.database, interval), name="members-sweeps"
        )


async def stop_sweeps(runtime: Any) -> None:
    task = runtime.extras.get("member_sweeps")
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
