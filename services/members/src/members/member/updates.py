"""``members.member.updated``: what services pricing by a member's level, tags or birthday
read. Written in the transaction that changed the member, with the member's new version."""

from __future__ import annotations

from datetime import date

from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import EventEnvelope
from contracts.events.members import MemberUpdated
from contracts.registry import make_envelope
from members.models import Member
from servicekit.outbox import add_event

PRODUCER = "members"


Profile = tuple[str | None, tuple[str, ...], date | None]


def profile(member: Member) -> Profile:
    """What ``members.member.updated`` carries, to tell whether a change needs announcing."""
    return member.level, tuple(sorted(member.tags or [])), member.birthday


async def publish_updated(
    session: AsyncSession, member: Member, causation: EventEnvelope | None = None
) -> None:
    payload = MemberUpdated(
        member_id=member.id,
        version=member.version,
        level=member.level,
        tags=sorted(member.tags or []),
        birthday=member.birthday,
    )
    await add_event(
        session,
        make_envelope(
            payload,
            producer=PRODUCER,
            aggregate_id=member.id,
            merchant_id=member.merchant_id,
            store_id=causation.store_id if causation is not None else None,
            correlation_id=(causation.correlation_id or causation.event_id)
            if causation is not None
            else None,
            causation_id=causation.event_id if causation is not None else None,
        ),
    )
