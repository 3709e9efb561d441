"""Manual and rule-based tags, and re-evaluating a member after a change.

A member's ``tags`` column is the union of their manual tags and the tags of the rules they
meet, sorted; ``member_tags`` remembers where each one comes from, so removing a manual tag
keeps it while a rule still gives it, and a rule no longer met takes away only its own.

:func:`refresh` is the one place a member's level and rule tags are re-evaluated: after a
paid order, after a change of the member, after a visit or refund reaches the member's analysis
facts (RFM segments a rule names are computed from them), and by the periodic sweep (which
catches rule and level definitions that changed, birthday months that began or ended, and RFM
recency that faded with time). It bumps the member's version and announces
``members.member.updated`` only when something changed, so running it twice, or from two
replicas at once (the member row is locked), changes nothing the second time.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import date

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import EventEnvelope
from members.analysis.rfm import Rfm
from members.analysis.service import member_rfm
from members.birthdays.service import today_for
from members.levels import service as levels
from members.levels.models import MemberStats
from members.member.updates import Profile, profile, publish_updated
from members.models import Member
from members.tags.models import MemberTag, TagRule
from members.tags.schemas import TagRuleCreate, TagRuleUpdate
from servicekit.auth import scoped_to_merchant
from servicekit.errors import Conflict, NotFound, VersionMismatch


def rule_met(
    rule: TagRule,
    member: Member,
    stats: MemberStats | None,
    today: date,
    rfm: Rfm | None = None,
) -> bool:
    """Whether ``member`` meets every condition of ``rule``; ``rfm`` is the member's RFM as of
    ``today``, needed when the rule names segments (without it such a rule is not met)."""
    if rule.rfm_segments is not None and (rfm is None or rfm.segment not in rule.rfm_segments):
        return False
    if rule.levels is not None and member.level not in rule.levels:
        return False
    if rule.min_points_balance is not None and member.points_balance < rule.min_points_balance:
        return False
    spend = stats.total_spend if stats is not None else 0
    visits = stats.visit_count if stats is not None else 0
    if rule.min_total_spend is not None and spend < rule.min_total_spend:
        return False
    if rule.min_visit_count is not None and visits < rule.min_visit_count:
        return False
    return rule.birthday_month is None or (
        member.birthday is not None and member.birthday.month == rule.birthday_month
    )


async def _sources(session: AsyncSession, member: Member) -> dict[str, set[str]]:
    rows = await session.execute(
        sa.select(MemberTag.source, MemberTag.tag).where(MemberTag.member_id == member.id)
    )
    found: dict[str, set[str]] = {"manual": set(), "rule": set()}
    for source, tag in rows:
        found[source].add(tag)
    return found


async def _set_source(
    session: AsyncSession, member: Member, source: str, tags: Iterable[str]
) -> None:
    wanted = set(tags)
    await session.execute(
        sa.delete(MemberTag).where(
            MemberTag.member_id == member.id,
            MemberTag.source == source,
            MemberTag.tag.not_in(sorted(wanted)) if wanted else sa.true(),
        )
    )
    if wanted:
        await session.execute(
            pg_insert(MemberTag)
            .values(
                [
                    {
                        "member_id": member.id,
                        "tag": tag,
                        "source": source,
                        "merchant_id": member.merchant_id,
                    }
                    for tag in sorted(wanted)
                ]
            )
            .on_conflict_do_nothing()
        )


async def _read_model(
    session: AsyncSession, member: Member, order: Sequence[str] | None = None
) -> None:
    """``member.tags`` becomes the union of its sources, keeping the order the tags had (or
    ``order``), new ones after them, sorted."""
    sources = await _sources(session, member)
    held = sources["manual"] | sources["rule"]
    base = list(dict.fromkeys(order if order is not None else member.tags or []))
    kept = [t for t in base if t in held]
    member.tags = kept + sorted(held - set(kept))


async def set_manual_tags(session: AsyncSession, member: Member, tags: Sequence[str]) -> None:
    """The member's manual tags become ``tags``; ``member.tags`` follows (not flushed)."""
    await _set_source(session, member, "manual", tags)
    await _read_model(session, member, order=tags)


async def refresh(
    session: AsyncSession,
    member: Member,
    *,
    causation: EventEnvelope | None = None,
    before: Profile | None = None,
    version_bumped: bool = False,
    announce: bool = False,
    today: date | None = None,
) -> bool:
    """Re-evaluate the level and rule tags of ``member`` (locked by the caller) and announce
    the member when what ``members.member.updated`` carries differs from ``before`` (by
    default: as the member was when called), or always with ``announce``. The version rises
    once per change, unless the caller raised it already. ``today`` (default: the merchant's
    today) is the day birthday months and RFM are judged on. Whether an event was written."""
    if before is None:
        before = profile(member)
    await levels.level_up(session, member)
    stats = await levels.stats_of(session, member)
    if today is None:
        today = await today_for(session, member.merchant_id)
    rules = (
        await session.scalars(
            scoped_to_merchant(sa.select(TagRule), TagRule, member.merchant_id).where(
                TagRule.active.is_(True)
            )
        )
    ).all()
    # Only a rule naming segments pays for reading the member's visits.
    rfm = (
        await member_rfm(session, member.merchant_id, member.id, today)
        if any(r.rfm_segments is not None for r in rules)
        else None
    )
    await _set_source(
        session, member, "rule", [r.tag for r in rules if rule_met(r, member, stats, today, rfm)]
    )
    await _read_model(session, member)
    changed = profile(member) != before
    if not changed and not announce:
        return False
    if changed and not version_bumped:
        member.version += 1
        member.updated_at = sa.func.now()
    await session.flush()
    await session.refresh(member)
    await publish_updated(session, member, causation)
    return True


async def refresh_for_visits(
    session: AsyncSession, merchant_id: uuid.UUID, member_id: uuid.UUID, causation: EventEnvelope
) -> None:
    """Re-evaluate a member whose visit facts changed, when a rule of the merchant depends on
    them: the points consumer may have refreshed the member before this visit was recorded."""
    uses_rfm = await session.scalar(
        scoped_to_merchant(sa.select(sa.literal(True)), TagRule, merchant_id)
        .where(TagRule.active.is_(True), TagRule.rfm_segments.is_not(None))
        .limit(1)
    )
    if not uses_rfm:
        return
    member = await session.scalar(
        scoped_to_merchant(sa.select(Member), Member, merchant_id)
        .where(Member.id == member_id)
        .with_for_update()
    )
    if member is not None:
        await refresh(session, member, causation=causation)


async def _locked_member(
    session: AsyncSession, merchant_id: uuid.UUID, member_id: uuid.UUID
) -> Member:
    member = await session.scalar(
        scoped_to_merchant(sa.select(Member), Member, merchant_id)
        .where(Member.id == member_id)
        .with_for_update()
    )
    if member is None:
        raise NotFound("Member not found.", code="member_not_found")
    return member


async def add_manual_tag(
    session: AsyncSession, merchant_id: uuid.UUID, member_id: uuid.UUID, tag: str
) -> Member:
    member = await _locked_member(session, merchant_id, member_id)
    before = profile(member)
    sources = await _sources(session, member)
    if tag not in sources["manual"]:
        manual = [t for t in member.tags or [] if t in sources["manual"]]
        await set_manual_tags(session, member, [*manual, tag])
    await refresh(session, member, before=before)
    return member


async def remove_manual_tag(
    session: AsyncSession, merchant_id: uuid.UUID, member_id: uuid.UUID, tag: str
) -> Member:
    member = await _locked_member(session, merchant_id, member_id)
    before = profile(member)
    sources = await _sources(session, member)
    if tag in sources["manual"]:
        await set_manual_tags(
            session, member, [t for t in member.tags or [] if t in sources["manual"] - {tag}]
        )
    await refresh(session, member, before=before)
    return member


# --- rules ---------------------------------------------------------------------------------


async def list_rules(session: AsyncSession, merchant_id: uuid.UUID) -> list[TagRule]:
    rows = await session.scalars(
        scoped_to_merchant(sa.select(TagRule), TagRule, merchant_id).order_by(TagRule.tag)
    )
    return list(rows)


async def get_rule(
    session: AsyncSession, merchant_id: uuid.UUID, rule_id: uuid.UUID, *, lock: bool = False
) -> TagRule:
    stmt = scoped_to_merchant(sa.select(TagRule), TagRule, merchant_id).where(TagRule.id == rule_id)
    if lock:
        stmt = stmt.with_for_update()
    rule = await session.scalar(stmt)
    if rule is None:
        raise NotFound("Tag rule not found.", code="tag_rule_not_found")
    return rule


async def create_rule(
    session: AsyncSession, merchant_id: uuid.UUID, body: TagRuleCreate
) -> TagRule:
    rule = TagRule(merchant_id=merchant_id, version=1, **body.model_dump())
    session.add(rule)
    try:
        async with session.begin_nested():
            await session.flush()
    except sa.exc.IntegrityError:
        raise Conflict("A rule already gives this tag.", code="tag_rule_exists") from None
    await session.refresh(rule)
    return rule


async def update_rule(
    session: AsyncSession, merchant_id: uuid.UUID, rule_id: uuid.UUID, body: TagRuleUpdate
) -> TagRule:
    rule = await get_rule(session, merchant_id, rule_id, lock=True)
    if body.version != rule.version:
        raise VersionMismatch(current_version=rule.version)
    for name, value in body.model_dump(exclude={"version"}).items():
        setattr(rule, name, value)
    rule.version += 1
    rule.updated_at = sa.func.now()
    await session.flush()
    await session.refresh(rule)
    return rule
