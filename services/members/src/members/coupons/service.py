"""Coupon templates, issuing coupons, voiding them, and following their redemption.

Issuing is once per cause: a coupon issued on sign-up, on a birthday (per year) or by a bulk
issue (per batch key) carries a ``source_key`` under a unique index with its template and
member, so a replay, a second replica or a re-run inserts nothing. The per-member limit
counts the member's coupons of the template that were not voided; issuing locks the member
row, so two issues at once cannot both pass the limit.

Redemption is orders' to decide; members follows it from ``orders.coupon.*``: each coupon
keeps the highest ``sequence`` applied, and a step with a lower or equal one (late, or
delivered twice) changes nothing. ``reserved`` and ``redeemed`` name the order; ``released``
makes the coupon ``issued`` again. A voided coupon stays voided, unless orders reports it
redeemed (the order was paid before the void reached it): that is what happened.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import EventEnvelope
from contracts.events.members import CouponIssued, CouponVoided
from contracts.events.orders import CouponRedeemed, CouponReleased, CouponReserved
from contracts.money import Money
from contracts.registry import make_envelope
from members.coupons.models import Coupon, CouponTemplate
from members.coupons.schemas import BulkIssueOut, TemplateCreate, TemplateUpdate
from members.models import Member
from servicekit.auth import Principal, require_store_access, scoped_to_merchant
from servicekit.errors import (
    FieldError,
    Forbidden,
    IllegalState,
    NotFound,
    ValidationFailed,
    VersionMismatch,
)
from servicekit.outbox import add_event

log = logging.getLogger(__name__)

PRODUCER = "members"
_CODE_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
Source = Literal["manual", "bulk", "signup", "birthday"]


def _new_code() -> str:
    return "".join(secrets.choice(_CODE_ALPHABET) for _ in range(12))


def _not_found() -> NotFound:
    return NotFound("Coupon template not found.", code="coupon_template_not_found")


# --- templates -----------------------------------------------------------------------------


def _visible_filter(principal: Principal) -> sa.ColumnElement[bool]:
    if principal.store_ids is None:
        return sa.true()
    stores = sorted(principal.store_ids)
    return sa.or_(
        CouponTemplate.store_ids.is_(None),
        CouponTemplate.store_ids.overlap(sa.cast(stores, CouponTemplate.store_ids.type)),
    )


def _manageable(principal: Principal, template: CouponTemplate) -> bool:
    """HQ (every store) manages every template; a caller limited to some stores only the
    templates valid nowhere but in their stores."""
    if principal.store_ids is None:
        return True
    return template.store_ids is not None and set(template.store_ids) <= principal.store_ids


def templates_query(principal: Principal) -> sa.Select[CouponTemplate]:
    return scoped_to_merchant(
        sa.select(CouponTemplate), CouponTemplate, principal.merchant_id
    ).where(_visible_filter(principal))


async def get_template(
    session: AsyncSession,
    principal: Principal,
    template_id: uuid.UUID,
    *,
    manage: bool = False,
    lock: bool = False,
) -> CouponTemplate:
    stmt = templates_query(principal).where(CouponTemplate.id == template_id)
    if lock:
        stmt = stmt.with_for_update()
    template = await session.scalar(stmt)
    if template is None:
        raise _not_found()
    if manage and not _manageable(principal, template):
        raise Forbidden(
            "This template is valid in stores outside yours.", code="template_outside_stores"
        )
    return template


async def create_template(
    session: AsyncSession, principal: Principal, body: TemplateCreate
) -> CouponTemplate:
    errors = body.term_errors()
    if principal.store_ids is not None and body.store_ids is None:
        errors.append(
            FieldError("store_ids", "store_ids_required", "Name the stores it is valid in.")
        )
    if errors:
        raise ValidationFailed(errors)
    for store_id in body.store_ids or []:
        require_store_access(principal, store_id)
    template = CouponTemplate(
        merchant_id=principal.merchant_id,
        name=body.name,
        kind=body.kind,
        currency=body.currency(),
        threshold=body.threshold.amount if body.threshold else None,
        amount_off=body.amount_off.amount if body.amount_off else None,
        percent_off_bp=body.percent_off_bp,
        cap=body.cap.amount if body.cap else None,
        product_ids=list(dict.fromkeys(body.product_ids)),
        store_ids=list(dict.fromkeys(body.store_ids)) if body.store_ids is not None else None,
        valid_from=body.valid_from,
        valid_until=body.valid_until,
        valid_days=body.valid_days,
        per_member_limit=body.per_member_limit,
        issue_on_signup=body.issue_on_signup,
        issue_on_birthday=body.issue_on_birthday,
        active=body.active,
        version=1,
    )
    session.add(template)
    await session.flush()
    await session.refresh(template)
    return template


async def update_template(
    session: AsyncSession, principal: Principal, template_id: uuid.UUID, body: TemplateUpdate
) -> CouponTemplate:
    template = await get_template(session, principal, template_id, manage=True, lock=True)
    if body.version != template.version:
        raise VersionMismatch(current_version=template.version)
    changes = body.model_dump(exclude_unset=True, exclude={"version"})
    for name, value in changes.items():
        if value is not None or name == "per_member_limit":
            setattr(template, name, value)
    template.version += 1
    template.updated_at = sa.func.now()
    await session.flush()
    await session.refresh(template)
    return template


# --- issuing -------------------------------------------------------------------------------


def _issued_event(coupon: Coupon, causation: EventEnvelope | None) -> EventEnvelope:
    def money(amount: int | None) -> Money | None:
        return Money.of(amount, coupon.currency) if amount is not None else None

    payload = CouponIssued(
        coupon_id=coupon.id,
        member_id=coupon.member_id,
        template_id=coupon.template_id,
        code=coupon.code,
        kind=coupon.kind,
        threshold=money(coupon.threshold),
        amount_off=money(coupon.amount_off),
        percent_off_bp=coupon.percent_off_bp,
        cap=money(coupon.cap),
        product_ids=list(coupon.product_ids or []),
        store_ids=list(coupon.store_ids) if coupon.store_ids is not None else None,
        valid_from=coupon.valid_from,
        valid_until=coupon.valid_until,
    )
    return make_envelope(
        payload,
        producer=PRODUCER,
        aggregate_id=coupon.id,
        merchant_id=coupon.merchant_id,
        correlation_id=(causation.correlation_id or causation.event_id) if causation else None,
        causation_id=causation.event_id if causation else None,
    )


async def issue(
    session: AsyncSession,
    template: CouponTemplate,
    member: Member,
    *,
    source: Source,
    source_key: str | None = None,
    now: datetime | None = None,
    causation: EventEnvelope | None = None,
) -> Coupon | None:
    """Issue a coupon of ``template`` to ``member`` (locked by the caller); ``None`` when
    this ``source_key`` already gave the member one. 409 ``template_inactive``,
    ``template_expired`` or ``coupon_limit_reached`` when it cannot be issued."""
    now = now or datetime.now(UTC)
    if template.merchant_id != member.merchant_id:
        raise _not_found()
    if not template.active:
        raise IllegalState("template_inactive", "The template is inactive.")
    if template.valid_days is not None:
        valid_from, valid_until = now, now + timedelta(days=template.valid_days)
    else:
        assert template.valid_from is not None
        assert template.valid_until is not None
        valid_from, valid_until = template.valid_from, template.valid_until
    if valid_until <= now:
        raise IllegalState("template_expired", "The template's validity has ended.")
    if template.per_member_limit is not None:
        held = await session.scalar(
            sa.select(sa.func.count())
            .select_from(Coupon)
            .where(
                Coupon.template_id == template.id,
                Coupon.member_id == member.id,
                Coupon.state != "voided",
            )
        )
        if (held or 0) >= template.per_member_limit:
            raise IllegalState(
                "coupon_limit_reached",
                "The member holds as many coupons of this template as allowed.",
                limit=template.per_member_limit,
            )
    coupon_id = await session.scalar(
        pg_insert(Coupon)
        .values(
            merchant_id=member.merchant_id,
            template_id=template.id,
            member_id=member.id,
            code=_new_code(),
            state="issued",
            kind=template.kind,
            currency=template.currency,
            threshold=template.threshold,
            amount_off=template.amount_off,
            percent_off_bp=template.percent_off_bp,
            cap=template.cap,
            product_ids=list(template.product_ids or []),
            store_ids=template.store_ids,
            valid_from=valid_from,
            valid_until=valid_until,
            source=source,
            source_key=source_key,
            sequence=0,
        )
        .on_conflict_do_nothing(
            index_elements=["template_id", "member_id", "source", "source_key"],
            index_where=sa.text("source_key IS NOT NULL"),
        )
        .returning(Coupon.id)
    )
    if coupon_id is None:
        return None
    coupon = await session.get(Coupon, coupon_id)
    assert coupon is not None
    await add_event(session, _issued_event(coupon, causation))
    return coupon


async def _lock_member(
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


async def issue_by_hand(
    session: AsyncSession, principal: Principal, template_id: uuid.UUID, member_id: uuid.UUID
) -> Coupon:
    template = await get_template(session, principal, template_id, manage=True)
    member = await _lock_member(session, principal.merchant_id, member_id)
    coupon = await issue(session, template, member, source="manual")
    assert coupon is not None  # no source key: never a duplicate
    return coupon


async def issue_to_tag(
    session: AsyncSession, principal: Principal, template_id: uuid.UUID, tag: str, key: str
) -> BulkIssueOut:
    """One coupon per member holding ``tag``, once per ``key``."""
    template = await get_template(session, principal, template_id, manage=True)
    if not template.active:
        raise IllegalState("template_inactive", "The template is inactive.")
    # Locked in id order, as every bulk run does, so two runs never deadlock.
    members = (
        await session.scalars(
            scoped_to_merchant(sa.select(Member), Member, principal.merchant_id)
            .where(Member.tags.contains([tag]))
            .order_by(Member.id)
            .with_for_update()
        )
    ).all()
    issued = already = over = 0
    now = datetime.now(UTC)
    for member in members:
        try:
            coupon = await issue(session, template, member, source="bulk", source_key=key, now=now)
        except IllegalState as exc:
            if exc.code != "coupon_limit_reached":
                raise
            over += 1
            continue
        if coupon is None:
            already += 1
        else:
            issued += 1
    return BulkIssueOut(
        matched=len(members), issued=issued, already_issued=already, over_limit=over
    )


async def issue_automatic(
    session: AsyncSession,
    member: Member,
    templates: Sequence[CouponTemplate],
    *,
    source: Literal["signup", "birthday"],
    source_key: str,
    now: datetime | None = None,
    causation: EventEnvelope | None = None,
) -> int:
    """Issue what ``templates`` give ``member`` (locked) on sign-up or a birthday; a template
    that cannot issue (expired, at its limit) is skipped. How many were issued."""
    count = 0
    for template in templates:
        try:
            coupon = await issue(
                session,
                template,
                member,
                source=source,
                source_key=source_key,
                now=now,
                causation=causation,
            )
        except IllegalState as exc:
            log.info("no %s coupon of %s for %s: %s", source, template.id, member.id, exc.code)
            continue
        count += coupon is not None
    return count


async def templates_flagged(
    session: AsyncSession, merchant_id: uuid.UUID, flag: Literal["signup", "birthday"]
) -> list[CouponTemplate]:
    column = (
        CouponTemplate.issue_on_signup if flag == "signup" else CouponTemplate.issue_on_birthday
    )
    rows = await session.scalars(
        scoped_to_merchant(sa.select(CouponTemplate), CouponTemplate, merchant_id)
        .where(CouponTemplate.active.is_(True), column.is_(True))
        .order_by(CouponTemplate.id)
    )
    return list(rows)


async def issue_on_signup(session: AsyncSession, member: Member) -> int:
    templates = await templates_flagged(session, member.merchant_id, "signup")
    return await issue_automatic(session, member, templates, source="signup", source_key="signup")


# --- coupons -------------------------------------------------------------------------------


def member_coupons_query(merchant_id: uuid.UUID, member_id: uuid.UUID) -> sa.Select[Coupon]:
    return scoped_to_merchant(sa.select(Coupon), Coupon, merchant_id).where(
        Coupon.member_id == member_id
    )


async def get_coupon(
    session: AsyncSession,
    merchant_id: uuid.UUID,
    member_id: uuid.UUID,
    coupon_id: uuid.UUID,
    *,
    lock: bool = False,
) -> Coupon:
    stmt = member_coupons_query(merchant_id, member_id).where(Coupon.id == coupon_id)
    if lock:
        stmt = stmt.with_for_update()
    coupon = await session.scalar(stmt)
    if coupon is None:
        raise NotFound("Coupon not found.", code="coupon_not_found")
    return coupon


async def void(
    session: AsyncSession,
    principal: Principal,
    member_id: uuid.UUID,
    coupon_id: uuid.UUID,
    reason: str,
) -> Coupon:
    coupon = await get_coupon(session, principal.merchant_id, member_id, coupon_id, lock=True)
    if coupon.state == "voided":
        return coupon
    if coupon.state != "issued":
        raise IllegalState(
            "coupon_not_voidable",
            f"The coupon is {coupon.state}: only an unused coupon can be voided.",
            state=coupon.state,
        )
    coupon.state = "voided"
    coupon.void_reason = reason
    coupon.updated_at = sa.func.now()
    await session.flush()
    await session.refresh(coupon)
    await add_event(
        session,
        make_envelope(
            CouponVoided(coupon_id=coupon.id, member_id=coupon.member_id, reason=reason),
            producer=PRODUCER,
            aggregate_id=coupon.id,
            merchant_id=coupon.merchant_id,
        ),
    )
    return coupon


_STEP_STATE = {"reserved": "reserved", "redeemed": "redeemed", "released": "issued"}


async def apply_redemption_step(
    session: AsyncSession,
    envelope: EventEnvelope,
    step: CouponReserved | CouponRedeemed | CouponReleased,
) -> bool:
    """Follow one step orders announced; whether the coupon changed."""
    if envelope.merchant_id is None:
        return False
    coupon = await session.scalar(
        scoped_to_merchant(sa.select(Coupon), Coupon, envelope.merchant_id)
        .where(Coupon.id == step.coupon_id)
        .with_for_update()
    )
    if coupon is None:
        log.warning("coupon step %s for unknown coupon %s", envelope.type, step.coupon_id)
        return False
    if coupon.member_id != step.member_id:
        log.warning("coupon %s step names member %s", coupon.id, step.member_id)
        return False
    if step.sequence <= coupon.sequence:
        return False
    kind = envelope.type.rsplit(".", 1)[1]
    coupon.sequence = step.sequence
    coupon.last_step = kind
    if coupon.state != "voided" or kind == "redeemed":
        coupon.state = _STEP_STATE[kind]
        coupon.order_id = step.order_id
        if isinstance(step, CouponReleased):
            coupon.discount = None
        else:
            coupon.discount = step.discount.amount
    coupon.updated_at = sa.func.now()
    await session.flush()
    return True
