"""Super admin handover within one legal entity.

1. The current super admin names the incoming one (phone, name); a code goes to that phone.
2. The incoming admin accepts with the code (and a password if new): they become a super
   admin with HQ reach, alongside the outgoing one.
3. The outgoing super admin completes: demoted to a chosen role, or deactivated.

Nothing is deleted: the old account, its audit trail and the handover stay.
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import utcnow
from identity.audit.service import record
from identity.common.concurrency import lock_merchant
from identity.common.permissions import ALL_SCOPES
from identity.context import Identity
from identity.deps import Actor, load_actor
from identity.handover.models import Handover
from identity.handover.schemas import (
    HandoverAccept,
    HandoverComplete,
    HandoverCreate,
    HandoverOut,
)
from identity.staff import service as staff_service
from identity.staff.models import Staff
from identity.staff.schemas import Assignment, StaffCreate
from identity.verification import service as codes
from identity.verification.schemas import Purpose
from servicekit.auth import Role
from servicekit.errors import (
    Conflict,
    FieldError,
    Forbidden,
    IllegalState,
    NotFound,
    ValidationFailed,
)


def _require_super_admin(actor: Actor) -> None:
    if not actor.super_admin:
        raise Forbidden("Only a super admin hands over.", code="super_admin_required")


async def start(
    session: AsyncSession, identity: Identity, actor: Actor, body: HandoverCreate, ip: str | None
) -> HandoverOut:
    _require_super_admin(actor)
    if body.phone == actor.staff.phone:
        raise ValidationFailed([FieldError("phone", "same_phone", "That is your own phone.")])
    # Two starts at once queue here; the partial unique index is the last word.
    await lock_merchant(session, actor.merchant_id)
    open_one = await session.scalar(
        sa.select(Handover.id).where(
            Handover.merchant_id == actor.merchant_id,
            Handover.status.in_(("pending", "accepted")),
        )
    )
    if open_one is not None:
        raise Conflict("A handover is already under way.", code="handover_in_progress")
    existing = await session.scalar(
        sa.select(Staff).where(Staff.merchant_id == actor.merchant_id, Staff.phone == body.phone)
    )
    if existing is not None and existing.status == "deactivated":
        raise IllegalState("staff_deactivated", "That phone belongs to a deactivated account.")
    handover = Handover(
        merchant_id=actor.merchant_id,
        from_staff_id=actor.id,
        phone=body.phone,
        name=body.name,
        status="pending",
    )
    session.add(handover)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError:
        raise Conflict("A handover is already under way.", code="handover_in_progress") from None
    await codes.issue(
        session, identity.settings, identity.sender, body.phone, Purpose.ADMIN_HANDOVER
    )
    await record(
        session,
        merchant_id=actor.merchant_id,
        action="handover_started",
        staff_id=actor.id,
        actor_id=actor.id,
        detail={
            "handover_id": str(handover.id),
            "to_staff_id": str(existing.id) if existing else None,
        },
        ip=ip,
    )
    return HandoverOut.model_validate(handover)


async def accept(
    session: AsyncSession,
    identity: Identity,
    handover_id: uuid.UUID,
    body: HandoverAccept,
    ip: str | None,
) -> HandoverOut:
    handover = await session.get(Handover, handover_id, with_for_update={"key_share": True})
    if handover is None or handover.status != "pending" or handover.phone != body.phone:
        # Indistinguishable from a wrong code: the id alone proves nothing.
        raise NotFound("Handover not found.")
    await codes.consume(session, identity.settings, body.phone, Purpose.ADMIN_HANDOVER, body.code)
    staff = await session.scalar(
        sa.select(Staff)
        .where(Staff.merchant_id == handover.merchant_id, Staff.phone == body.phone)
        .with_for_update(key_share=True)
    )
    if staff is None:
        if body.password is None:
            raise ValidationFailed(
                [FieldError("password", "missing", "Choose a password for the new account.")]
            )
        password_hash = await identity.passwords.hash(body.password)
        staff = await staff_service.add_staff(
            session,
            handover.merchant_id,
            StaffCreate(
                phone=body.phone,
                name=handover.name,
                password=body.password,
                role=Role.HQ_ADMIN,
                scopes=sorted(ALL_SCOPES),
            ),
            password_hash,
            None,
            super_admin=True,
        )
    else:
        if staff.status == "deactivated":
            raise IllegalState("staff_deactivated", "This account was deactivated.")
        if body.password is not None:
            staff.password_hash = await identity.passwords.hash(body.password)
        staff.super_admin = True
        await staff_service.apply_assignment(
            session, staff, Role.HQ_ADMIN, None, [], sorted(ALL_SCOPES)
        )
        if staff.status != "active":
            await staff_service.set_status(
                session, staff, "active", actor_id=staff.id, action="staff_enabled"
            )
    handover.to_staff_id = staff.id
    handover.status = "accepted"
    handover.accepted_at = utcnow()
    await record(
        session,
        merchant_id=handover.merchant_id,
        action="handover_accepted",
        staff_id=staff.id,
        actor_id=staff.id,
        detail={"handover_id": str(handover.id), "from_staff_id": str(handover.from_staff_id)},
        ip=ip,
    )
    return HandoverOut.model_validate(handover)


async def _load(session: AsyncSession, actor: Actor, handover_id: uuid.UUID) -> Handover:
    handover = await session.get(Handover, handover_id, with_for_update={"key_share": True})
    if handover is None or handover.merchant_id != actor.merchant_id:
        raise NotFound("Handover not found.")
    return handover


async def get(session: AsyncSession, actor: Actor, handover_id: uuid.UUID) -> HandoverOut:
    _require_super_admin(actor)
    return HandoverOut.model_validate(await _load(session, actor, handover_id))


async def complete(
    session: AsyncSession,
    actor: Actor,
    handover_id: uuid.UUID,
    body: HandoverComplete,
    ip: str | None,
) -> HandoverOut:
    _require_super_admin(actor)
    handover = await _load(session, actor, handover_id)
    if handover.from_staff_id != actor.id:
        raise Forbidden("Only the outgoing super admin completes the handover.")
    if handover.status != "accepted":
        raise IllegalState(
            "handover_not_accepted", "The incoming super admin has not accepted yet."
        )
    outgoing = await session.get(Staff, actor.id, with_for_update={"key_share": True})
    assert outgoing is not None
    # The incoming admin is a super admin by now, so this check passes unless they left.
    await staff_service.ensure_other_super_admin(session, outgoing)
    if body.action == "demote":
        assignment = body.assignment or Assignment(role=Role.HQ_ADMIN)
        incoming = await session.get(Staff, handover.to_staff_id)
        assert incoming is not None
        # The new role is granted by the incoming super admin's authority.
        granter = await load_actor(session, incoming)
        store_id, region_ids, scopes = await staff_service.resolve_assignment(
            session, granter, outgoing.merchant_id, assignment
        )
        outgoing.super_admin = False
        await staff_service.apply_assignment(
            session, outgoing, assignment.role, store_id, region_ids, scopes
        )
    else:
        outgoing.super_admin = False
        await staff_service.set_status(
            session, outgoing, "deactivated", actor_id=actor.id, action="account_deactivated"
        )
    handover.status = "completed"
    handover.outgoing_action = body.action
    handover.completed_at = utcnow()
    await record(
        session,
        merchant_id=handover.merchant_id,
        action="handover_completed",
        staff_id=outgoing.id,
        actor_id=actor.id,
        detail={
            "handover_id": str(handover.id),
            "to_staff_id": str(handover.to_staff_id),
            "outgoing": body.action,
            "role": outgoing.role,
        },
        ip=ip,
    )
    return HandoverOut.model_validate(handover)


async def cancel(
    session: AsyncSession, actor: Actor, handover_id: uuid.UUID, ip: str | None
) -> HandoverOut:
    _require_super_admin(actor)
    handover = await _load(session, actor, handover_id)
    if handover.status != "pending":
        raise IllegalState("handover_not_pending", "Only a pending handover can be cancelled.")
    handover.status = "cancelled"
    await record(
        session,
        merchant_id=handover.merchant_id,
        action="handover_cancelled",
        staff_id=actor.id,
        actor_id=actor.id,
        detail={"handover_id": str(handover.id)},
        ip=ip,
    )
    return HandoverOut.model_validate(handover)
