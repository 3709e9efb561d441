"""Merchant logic: self-service sign-up (merchant, first store, super admin in one
transaction) and the merchant profile."""

from __future__ import annotations

import secrets
import uuid

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from identity import events
from identity.audit.service import record
from identity.common.concurrency import check_version
from identity.common.permissions import ALL_SCOPES
from identity.context import Identity
from identity.deps import Actor
from identity.merchants.models import Merchant
from identity.merchants.schemas import (
    MerchantIn,
    MerchantOut,
    MerchantUpdate,
    SignupOut,
    SignupRequest,
)
from identity.staff import service as staff_service
from identity.staff.models import Staff
from identity.staff.schemas import StaffCreate, StaffOut
from identity.stores import service as store_service
from identity.stores.models import Store
from identity.stores.schemas import StoreCreate, StoreOut
from identity.verification import service as codes
from identity.verification.schemas import Purpose
from servicekit.auth import Role
from servicekit.errors import Conflict, NotFound

_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


async def _new_merchant_code(session: AsyncSession) -> str:
    for _ in range(20):
        code = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(8))
        taken = await session.scalar(sa.select(Merchant.id).where(Merchant.code == code))
        if taken is None:
            return code
    raise RuntimeError("could not find a free merchant code")


async def credit_code_taken(session: AsyncSession, credit_code: str) -> bool:
    found = await session.scalar(sa.select(Merchant.id).where(Merchant.credit_code == credit_code))
    return found is not None


async def found_merchant(
    session: AsyncSession,
    merchant_in: MerchantIn,
    store_in: StoreCreate,
    admin: StaffCreate,
    password_hash: str,
    *,
    code: str | None = None,
) -> tuple[Merchant, Store, Staff]:
    """Create a merchant with its first store and super admin, and their events."""
    # Serialises sign-ups of one credit code, so the duplicate check below cannot race.
    await session.execute(
        sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtext(merchant_in.credit_code)))
    )
    if await credit_code_taken(session, merchant_in.credit_code):
        raise Conflict(
            "A merchant with this unified social credit code is already registered.",
            code="credit_code_taken",
        )
    merchant = Merchant(
        code=code or await _new_merchant_code(session),
        name=merchant_in.name,
        credit_code=merchant_in.credit_code,
        legal_rep_name=merchant_in.legal_rep_name,
        legal_rep_id_number=merchant_in.legal_rep_id_number,
        contact_phone=merchant_in.contact_phone or admin.phone,
        industry=merchant_in.industry,
        status="active",
    )
    session.add(merchant)
    await session.flush()
    await events.merchant_created(session, merchant)
    store = await store_service.add_store(session, merchant.id, store_in, None)
    staff = await staff_service.add_staff(
        session, merchant.id, admin, password_hash, None, super_admin=True
    )
    return merchant, store, staff


async def signup(
    session: AsyncSession, identity: Identity, body: SignupRequest, ip: str | None
) -> SignupOut:
    if await credit_code_taken(session, body.merchant.credit_code):
        # Checked before the code is spent, so the applicant can fix the form and retry.
        raise Conflict(
            "A merchant with this unified social credit code is already registered.",
            code="credit_code_taken",
        )
    await codes.consume(
        session, identity.settings, body.admin.phone, Purpose.SIGNUP, body.admin.code
    )
    admin = StaffCreate(
        phone=body.admin.phone,
        name=body.admin.name,
        password=body.admin.password,
        role=Role.HQ_ADMIN,
        scopes=sorted(ALL_SCOPES),
    )
    password_hash = await identity.passwords.hash(body.admin.password)
    merchant, store, staff = await found_merchant(
        session, body.merchant, body.store, admin, password_hash
    )
    await record(
        session,
        merchant_id=merchant.id,
        action="merchant_signed_up",
        staff_id=staff.id,
        detail={"store_id": str(store.id)},
        ip=ip,
    )
    return SignupOut(
        merchant=MerchantOut.of(merchant, reveal_phone=True),
        store=StoreOut.model_validate(store),
        admin=StaffOut.of(staff, reveal_phone=True),
    )


async def _load(
    session: AsyncSession, actor: Actor, merchant_id: uuid.UUID, *, for_update: bool = False
) -> Merchant:
    if merchant_id != actor.merchant_id:
        raise NotFound("Merchant not found.")
    merchant = await session.get(
        Merchant, merchant_id, with_for_update={"key_share": True} if for_update else None
    )
    if merchant is None:
        raise NotFound("Merchant not found.")
    return merchant


async def get(session: AsyncSession, actor: Actor, merchant_id: uuid.UUID) -> MerchantOut:
    merchant = await _load(session, actor, merchant_id)
    return MerchantOut.of(merchant, reveal_phone=actor.has("settings:manage"))


async def update(
    session: AsyncSession, actor: Actor, merchant_id: uuid.UUID, body: MerchantUpdate
) -> MerchantOut:
    merchant = await _load(session, actor, merchant_id, for_update=True)
    actor.require("settings:manage")
    check_version(merchant.version, body.version)
    if body.name is not None:
        merchant.name = body.name
    if body.contact_phone is not None:
        merchant.contact_phone = body.contact_phone
    if body.industry is not None:
        merchant.industry = body.industry
    merchant.version += 1
    await session.flush()
    await events.merchant_updated(session, merchant)
    await record(
        session,
        merchant_id=merchant.id,
        action="merchant_updated",
        actor_id=actor.id,
        detail={"fields": sorted(body.model_fields_set - {"version"})},
    )
    return MerchantOut.of(merchant, reveal_phone=True)
