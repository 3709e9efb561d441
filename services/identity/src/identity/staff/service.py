"""Staff logic: who may create, see and change whom.

* Everything stays inside the caller's merchant; staff outside the caller's stores are 404.
* A caller assigns only roles below their own (HQ admins may appoint HQ admins) and only
  scopes they hold themselves, within the role's ceiling; nobody changes their own role.
* Super admins are changed only by super admins, and the last active one can be neither
  demoted nor disabled nor deactivated.
* A change of role, scope or status signs the account out, so its tokens never outlive it.
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import utcnow
from identity import events
from identity.audit.service import record
from identity.auth import throttle
from identity.auth.service import revoke_sessions
from identity.common.concurrency import check_version, lock_merchant
from identity.common.permissions import (
    ALL_SCOPES,
    ROLE_DEFAULT_SCOPES,
    ROLE_MAX_SCOPES,
    can_assign_role,
    can_manage,
)
from identity.common.validation import mask_phone
from identity.config import Settings
from identity.deps import Actor
from identity.merchants.models import Merchant
from identity.regions.models import Region
from identity.staff.models import Staff
from identity.staff.schemas import (
    Assignment,
    Deactivation,
    MeOut,
    MerchantSummary,
    PhoneChange,
    RoleChange,
    StaffCreate,
    StaffOut,
    StaffUpdate,
    UnlockOut,
)
from identity.stores.models import Store
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
from servicekit.pagination import CursorParams, Page, paginate


def reveal_phone(actor: Actor, staff: Staff) -> bool:
    return actor.id == staff.id or actor.role is Role.HQ_ADMIN


def out(actor: Actor, staff: Staff) -> StaffOut:
    return StaffOut.of(staff, reveal_phone=reveal_phone(actor, staff))


async def resolve_assignment(
    session: AsyncSession, actor: Actor | None, merchant_id: uuid.UUID, body: Assignment
) -> tuple[uuid.UUID | None, list[uuid.UUID], list[str]]:
    """Validated (store_id, region_ids, scopes) for ``body``; ``actor`` None means the system
    (sign-up, handover)."""
    role = body.role
    if actor is not None and not can_assign_role(actor.role, role):
        raise Forbidden(f"You cannot assign the role '{role.value}'.", code="role_not_grantable")
    store_id: uuid.UUID | None = None
    region_ids: list[uuid.UUID] = []
    if role in (Role.STORE_MANAGER, Role.CASHIER):
        if body.store_id is None or body.region_ids:
            raise ValidationFailed(
                [FieldError("store_id", "missing", "This role works in exactly one store.")]
            )
        store = await session.get(Store, body.store_id)
        visible = actor is None or actor.can_see_store(body.store_id)
        if store is None or store.merchant_id != merchant_id or not visible:
            raise ValidationFailed([FieldError("store_id", "unknown_store", "No such store.")])
        if store.status == "archived":
            raise ValidationFailed([FieldError("store_id", "store_archived", "Store archived.")])
        store_id = store.id
    elif role is Role.REGIONAL_MANAGER:
        if not body.region_ids or body.store_id is not None:
            raise ValidationFailed(
                [FieldError("region_ids", "missing", "A regional manager needs regions.")]
            )
        wanted = set(body.region_ids)
        found = set(
            (
                await session.scalars(
                    sa.select(Region.id).where(
                        Region.merchant_id == merchant_id,
                        Region.id.in_(wanted),
                        Region.status == "active",
                    )
                )
            ).all()
        )
        if actor is not None and actor.store_ids is not None:
            found &= actor.region_ids
        if found != wanted:
            raise ValidationFailed([FieldError("region_ids", "unknown_region", "No such region.")])
        region_ids = sorted(wanted)
    elif body.store_id is not None or body.region_ids:
        raise ValidationFailed(
            [FieldError("store_id", "not_allowed", "An HQ admin works for the whole merchant.")]
        )

    if body.scopes is None:
        scopes = set(ROLE_DEFAULT_SCOPES[role])
        if actor is not None:
            scopes &= actor.scopes
    else:
        scopes = set(body.scopes)
        unknown = scopes - ALL_SCOPES
        if unknown:
            raise ValidationFailed(
                [FieldError("scopes", "unknown_scope", f"Unknown: {', '.join(sorted(unknown))}.")]
            )
        above_role = scopes - ROLE_MAX_SCOPES[role]
        if above_role:
            raise ValidationFailed(
                [
                    FieldError(
                        "scopes",
                        "scope_not_allowed_for_role",
                        f"Not for a {role.value}: {', '.join(sorted(above_role))}.",
                    )
                ]
            )
        if actor is not None and not scopes <= actor.scopes:
            raise Forbidden(
                "You cannot grant permissions you do not hold: "
                + ", ".join(sorted(scopes - actor.scopes)),
                code="scope_not_grantable",
            )
    return store_id, region_ids, sorted(scopes)


async def _phone_taken(session: AsyncSession, merchant_id: uuid.UUID, phone: str) -> bool:
    found = await session.scalar(
        sa.select(Staff.id).where(Staff.merchant_id == merchant_id, Staff.phone == phone)
    )
    return found is not None


async def add_staff(
    session: AsyncSession,
    merchant_id: uuid.UUID,
    body: StaffCreate,
    password_hash: str,
    actor: Actor | None,
    *,
    super_admin: bool = False,
) -> Staff:
    """Insert a staff account and its event (the system passes ``actor=None``)."""
    store_id, region_ids, scopes = await resolve_assignment(session, actor, merchant_id, body)
    if await _phone_taken(session, merchant_id, body.phone):
        raise Conflict("Another account of this merchant uses this phone.", code="phone_taken")
    staff = Staff(
        merchant_id=merchant_id,
        phone=body.phone,
        name=body.name,
        id_number=body.id_number,
        password_hash=password_hash,
        role=body.role.value,
        scopes=scopes,
        store_id=store_id,
        region_ids=region_ids,
        status="active",
        super_admin=super_admin,
    )
    session.add(staff)
    await session.flush()
    await events.staff_created(session, staff)
    return staff


def _visible(actor: Actor) -> sa.Select[Staff]:
    stmt = sa.select(Staff).where(Staff.merchant_id == actor.merchant_id)
    if actor.store_ids is not None:
        stmt = stmt.where(Staff.store_id.in_(sorted(actor.store_ids)) | (Staff.id == actor.id))
    return stmt


async def load(session: AsyncSession, actor: Actor, staff_id: uuid.UUID) -> Staff:
    staff = await session.scalar(
        _visible(actor)
        .where(Staff.id == staff_id)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    )
    if staff is None:
        raise NotFound("Staff member not found.")
    return staff


def _guard(actor: Actor, staff: Staff) -> None:
    """May ``actor`` change ``staff`` at all?"""
    actor.require("staff:manage")
    if staff.id == actor.id:
        raise Forbidden("Use /v1/me to change your own account.", code="own_account")
    if not can_manage(actor.role, Role(staff.role)):
        raise Forbidden("You cannot change an account at or above your role.")
    if staff.super_admin and not actor.super_admin:
        raise Forbidden("Only a super admin changes a super admin.", code="super_admin_required")


async def ensure_other_super_admin(session: AsyncSession, staff: Staff) -> None:
    """409 ``last_super_admin`` unless another active super admin remains.

    Counted under the merchant's lock: two super admins demoting each other at once are
    checked one after the other, and the second sees the first's change."""
    if not staff.super_admin:
        return
    await lock_merchant(session, staff.merchant_id)
    others = await session.scalar(
        sa.select(sa.func.count())
        .select_from(Staff)
        .where(
            Staff.merchant_id == staff.merchant_id,
            Staff.super_admin.is_(True),
            Staff.status == "active",
            Staff.id != staff.id,
        )
    )
    if not others:
        raise IllegalState(
            "last_super_admin",
            "The merchant must keep an active super admin; hand over the role first.",
        )


async def create(
    session: AsyncSession, actor: Actor, body: StaffCreate, password_hash: str
) -> StaffOut:
    actor.require("staff:manage")
    staff = await add_staff(session, actor.merchant_id, body, password_hash, actor)
    await record(
        session,
        merchant_id=actor.merchant_id,
        action="staff_created",
        staff_id=staff.id,
        actor_id=actor.id,
        detail={"role": staff.role, "scopes": staff.scopes},
    )
    return out(actor, staff)


async def list_staff(
    session: AsyncSession,
    actor: Actor,
    params: CursorParams,
    *,
    store_id: uuid.UUID | None = None,
    role: Role | None = None,
    status: str | None = None,
) -> Page[StaffOut]:
    actor.require("staff:manage")
    stmt = _visible(actor)
    if store_id is not None:
        stmt = stmt.where(Staff.store_id == store_id)
    if role is not None:
        stmt = stmt.where(Staff.role == role.value)
    if status is not None:
        stmt = stmt.where(Staff.status == status)
    return await paginate(
        session,
        stmt,
        order_by=(Staff.created_at, Staff.id),
        params=params,
        map=lambda s: out(actor, s),
    )


async def get(session: AsyncSession, actor: Actor, staff_id: uuid.UUID) -> StaffOut:
    staff = await session.scalar(_visible(actor).where(Staff.id == staff_id))
    if staff is None or (staff.id != actor.id and not actor.has("staff:manage")):
        raise NotFound("Staff member not found.")
    return out(actor, staff)


async def update(
    session: AsyncSession, actor: Actor, staff_id: uuid.UUID, body: StaffUpdate
) -> StaffOut:
    staff = await load(session, actor, staff_id)
    _guard(actor, staff)
    check_version(staff.version, body.version)
    if staff.status == "deactivated":
        raise IllegalState("staff_deactivated", "A deactivated account is kept for audit only.")
    if body.name is not None:
        staff.name = body.name
    if "id_number" in body.model_fields_set:
        staff.id_number = body.id_number
    staff.version += 1
    await session.flush()
    await events.staff_updated(session, staff)
    return out(actor, staff)


async def change_role(
    session: AsyncSession, actor: Actor, staff_id: uuid.UUID, body: RoleChange
) -> StaffOut:
    staff = await load(session, actor, staff_id)
    _guard(actor, staff)
    check_version(staff.version, body.version)
    if staff.status == "deactivated":
        raise IllegalState("staff_deactivated", "A deactivated account is kept for audit only.")
    store_id, region_ids, scopes = await resolve_assignment(session, actor, staff.merchant_id, body)
    if staff.super_admin and body.role is not Role.HQ_ADMIN:
        await ensure_other_super_admin(session, staff)
        staff.super_admin = False
    previous = {"role": staff.role, "scopes": list(staff.scopes)}
    await apply_assignment(session, staff, body.role, store_id, region_ids, scopes)
    await record(
        session,
        merchant_id=staff.merchant_id,
        action="role_changed",
        staff_id=staff.id,
        actor_id=actor.id,
        detail={"from": previous, "to": {"role": staff.role, "scopes": staff.scopes}},
    )
    return out(actor, staff)


async def apply_assignment(
    session: AsyncSession,
    staff: Staff,
    role: Role,
    store_id: uuid.UUID | None,
    region_ids: list[uuid.UUID],
    scopes: list[str],
) -> None:
    previous_role = staff.role
    staff.role = role.value
    staff.store_id = store_id
    staff.region_ids = region_ids
    staff.scopes = scopes
    staff.version += 1
    await revoke_sessions(session, staff)
    await session.flush()
    await events.staff_role_changed(session, staff, previous_role)


async def set_status(
    session: AsyncSession,
    staff: Staff,
    status: str,
    *,
    actor_id: uuid.UUID | None,
    action: str,
) -> None:
    if status != "active":
        await ensure_other_super_admin(session, staff)
        await revoke_sessions(session, staff)
    previous = staff.status
    staff.status = status
    if status == "deactivated":
        staff.deactivated_at = utcnow()
    staff.version += 1
    await session.flush()
    await events.staff_status_changed(session, staff, previous)
    await record(
        session,
        merchant_id=staff.merchant_id,
        action=action,
        staff_id=staff.id,
        actor_id=actor_id,
        detail={"from": previous, "to": status},
    )


async def disable(
    session: AsyncSession, actor: Actor, staff_id: uuid.UUID, version: int | None
) -> StaffOut:
    staff = await load(session, actor, staff_id)
    _guard(actor, staff)
    check_version(staff.version, version)
    if staff.status == "deactivated":
        raise IllegalState("staff_deactivated", "A deactivated account is kept for audit only.")
    if staff.status != "disabled":
        await set_status(session, staff, "disabled", actor_id=actor.id, action="staff_disabled")
    return out(actor, staff)


async def enable(
    session: AsyncSession, actor: Actor, staff_id: uuid.UUID, version: int | None
) -> StaffOut:
    staff = await load(session, actor, staff_id)
    _guard(actor, staff)
    check_version(staff.version, version)
    if staff.status == "deactivated":
        raise IllegalState("staff_deactivated", "A deactivated account is kept for audit only.")
    if staff.status != "active":
        await set_status(session, staff, "active", actor_id=actor.id, action="staff_enabled")
    return out(actor, staff)


async def unlock(session: AsyncSession, actor: Actor, staff_id: uuid.UUID) -> UnlockOut:
    """Lift the sign-in delay failed attempts put on the account's phone. A store manager
    unlocks their store's staff, HQ anyone; the account itself is not changed."""
    actor.require("staff:manage")
    staff = await load(session, actor, staff_id)
    if staff.id == actor.id:
        raise Forbidden("Sign in with a code sent to your phone instead.", code="own_account")
    if actor.role is not Role.HQ_ADMIN and not can_manage(actor.role, Role(staff.role)):
        raise Forbidden("You cannot unlock an account at or above your role.")
    lifted = await throttle.clear_phone(session, staff.phone, utcnow())
    await record(
        session,
        merchant_id=staff.merchant_id,
        action="staff_unlocked",
        staff_id=staff.id,
        actor_id=actor.id,
        detail={"lifted_until": lifted.isoformat() if lifted is not None else None},
    )
    if lifted is not None:
        await events.staff_sign_in_unlocked(session, staff, actor.id)
    return UnlockOut(staff_id=staff.id, was_throttled=lifted is not None)


# --- the caller's own account ---------------------------------------------------------------


async def me(session: AsyncSession, actor: Actor) -> MeOut:
    merchant = await session.get(Merchant, actor.merchant_id)
    assert merchant is not None
    return MeOut(
        staff=StaffOut.of(actor.staff, reveal_phone=True),
        merchant=MerchantSummary(id=merchant.id, code=merchant.code, name=merchant.name),
        store_ids=sorted(actor.store_ids) if actor.store_ids is not None else None,
    )


async def change_phone(
    session: AsyncSession,
    settings: Settings,
    staff_id: uuid.UUID,
    body: PhoneChange,
    ip: str | None,
) -> StaffOut:
    """Move the account to a new phone, proven with a ``phone_change`` code sent to it."""
    staff = await session.get(Staff, staff_id, with_for_update={"key_share": True})
    assert staff is not None
    await codes.consume(session, settings, body.phone, Purpose.PHONE_CHANGE, body.code)
    if await _phone_taken(session, staff.merchant_id, body.phone):
        raise Conflict("Another account of this merchant uses this phone.", code="phone_taken")
    previous = staff.phone
    staff.phone = body.phone
    staff.version += 1
    await session.flush()
    await events.staff_updated(session, staff)
    await record(
        session,
        merchant_id=staff.merchant_id,
        action="phone_changed",
        staff_id=staff.id,
        detail={"from": mask_phone(previous), "to": mask_phone(body.phone)},
        ip=ip,
    )
    return StaffOut.of(staff, reveal_phone=True)


async def deactivate_self(
    session: AsyncSession,
    settings: Settings,
    staff_id: uuid.UUID,
    body: Deactivation,
    ip: str | None,
) -> None:
    """Close one's own account with an ``account_deactivation`` code; the records stay."""
    staff = await session.get(Staff, staff_id, with_for_update={"key_share": True})
    assert staff is not None
    await codes.consume(session, settings, staff.phone, Purpose.ACCOUNT_DEACTIVATION, body.code)
    await set_status(session, staff, "deactivated", actor_id=staff.id, action="account_deactivated")
