"""Registering, changing and finding members; always within the caller's merchant."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.events.members import MemberCreated
from contracts.ids import new_id
from contracts.registry import make_envelope
from members.coupons.service import issue_on_signup
from members.member.schemas import MemberCreate, MemberUpdate
from members.member.updates import profile
from members.models import Member
from members.tags.service import refresh, set_manual_tags
from servicekit.auth import scoped_to_merchant
from servicekit.errors import Conflict, NotFound, VersionMismatch
from servicekit.outbox import add_event

PRODUCER = "members"


def _phone_taken() -> Conflict:
    return Conflict("Another member of this merchant has this phone.", code="phone_taken")


async def create_member(
    session: AsyncSession, merchant_id: uuid.UUID, body: MemberCreate
) -> Member:
    member_id = new_id()
    inserted = await session.scalar(
        pg_insert(Member)
        .values(
            id=member_id,
            merchant_id=merchant_id,
            phone=body.phone,
            name=body.name,
            birthday=body.birthday,
            tags=body.tags,
            level=body.level,
            points_balance=0,
            version=1,
        )
        .on_conflict_do_nothing(constraint="uq_members_merchant_phone")
        .returning(Member.id)
    )
    if inserted is None:
        raise _phone_taken()
    member = await session.get(Member, member_id)
    assert member is not None
    await add_event(
        session,
        make_envelope(
            MemberCreated(member_id=member.id, level=member.level),
            producer=PRODUCER,
            aggregate_id=member.id,
            merchant_id=merchant_id,
        ),
    )
    # The row is new and uncommitted: nobody else can hold it, no lock needed.
    await set_manual_tags(session, member, body.tags)
    await refresh(session, member, version_bumped=True, announce=True)
    await issue_on_signup(session, member)
    return member


async def get_member(
    session: AsyncSession, merchant_id: uuid.UUID, member_id: uuid.UUID, *, lock: bool = False
) -> Member:
    stmt = scoped_to_merchant(sa.select(Member), Member, merchant_id).where(Member.id == member_id)
    if lock:
        stmt = stmt.with_for_update()
    member = await session.scalar(stmt)
    if member is None:
        raise NotFound("Member not found.", code="member_not_found")
    return member


async def find_by_phone(session: AsyncSession, merchant_id: uuid.UUID, phone: str) -> Member:
    member = await session.scalar(
        scoped_to_merchant(sa.select(Member), Member, merchant_id).where(Member.phone == phone)
    )
    if member is None:
        raise NotFound("No member has this phone.", code="member_not_found")
    return member


async def update_member(
    session: AsyncSession, merchant_id: uuid.UUID, member_id: uuid.UUID, body: MemberUpdate
) -> Member:
    member = await get_member(session, merchant_id, member_id, lock=True)
    if body.version != member.version:
        raise VersionMismatch(current_version=member.version)
    before = profile(member)
    changes = body.model_dump(exclude_unset=True, exclude={"version"})
    if changes.get("phone") is None:
        changes.pop("phone", None)  # a phone can be changed, never removed
    if "phone" in changes and changes["phone"] != member.phone:
        taken = await session.scalar(
            scoped_to_merchant(sa.select(Member.id), Member, merchant_id).where(
                Member.phone == changes["phone"]
            )
        )
        if taken is not None:
            raise _phone_taken()
    for name, value in changes.items():
        if name == "tags":
            # The tags given are the manual ones; rule tags are the rules' to keep.
            await set_manual_tags(session, member, value or [])
        else:
            setattr(member, name, value)
    member.version += 1
    member.updated_at = sa.func.now()
    try:
        await session.flush()
    except sa.exc.IntegrityError:
        raise _phone_taken() from None
    await session.refresh(member)
    await refresh(session, member, before=before, version_bumped=True)
    return member
