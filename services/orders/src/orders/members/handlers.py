"""Keep the members replica from ``members.member.created`` and ``members.member.updated``.

Members are never deleted (there is no such event), so the replica only grows: a redelivered
or replayed creation changes nothing. The level prices member promotions: an update carries a
rising ``version`` and only a higher one changes the row, so a late older update (or the
creation arriving after an update) never puts back an old level.
"""

from __future__ import annotations

from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import EventEnvelope
from contracts.events.members import MemberCreated, MemberUpdated
from orders.catalog.handlers import merchant_of
from orders.models import Member
from servicekit.consumer import HandlerRegistry

handlers = HandlerRegistry()


@handlers.on("members.member.created")
async def member_created(session: AsyncSession, envelope: EventEnvelope) -> None:
    member = MemberCreated.model_validate(envelope.payload)
    await session.execute(
        pg.insert(Member)
        .values(merchant_id=merchant_of(envelope), member_id=member.member_id, level=member.level)
        .on_conflict_do_nothing(index_elements=[Member.merchant_id, Member.member_id])
    )


@handlers.on("members.member.updated")
async def member_updated(session: AsyncSession, envelope: EventEnvelope) -> None:
    member = MemberUpdated.model_validate(envelope.payload)
    stmt = pg.insert(Member).values(
        merchant_id=merchant_of(envelope),
        member_id=member.member_id,
        level=member.level,
        version=member.version,
    )
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=[Member.merchant_id, Member.member_id],
            set_={"level": stmt.excluded.level, "version": stmt.excluded.version},
            where=Member.version < stmt.excluded.version,
        )
    )
