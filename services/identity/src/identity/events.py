"""Writing identity's domain events to the outbox, in the caller's transaction."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from contracts.events import identity as ev
from contracts.registry import EventPayload, make_envelope
from identity.merchants.models import Merchant
from identity.staff.models import Staff
from identity.stores.models import Store
from servicekit.outbox import add_event

PRODUCER = "identity"


async def publish(
    session: AsyncSession,
    payload: EventPayload,
    *,
    aggregate_id: uuid.UUID,
    merchant_id: uuid.UUID,
    store_id: uuid.UUID | None = None,
) -> None:
    envelope = make_envelope(
        payload,
        producer=PRODUCER,
        aggregate_id=aggregate_id,
        merchant_id=merchant_id,
        store_id=store_id,
    )
    await add_event(session, envelope)


async def merchant_created(session: AsyncSession, merchant: Merchant) -> None:
    payload = ev.MerchantCreated(
        merchant_id=merchant.id,
        code=merchant.code,
        name=merchant.name,
        credit_code=merchant.credit_code,
        industry=merchant.industry,
        status=merchant.status,
        version=merchant.version,
        created_at=merchant.created_at,
    )
    await publish(session, payload, aggregate_id=merchant.id, merchant_id=merchant.id)


async def merchant_updated(session: AsyncSession, merchant: Merchant) -> None:
    payload = ev.MerchantUpdated(
        merchant_id=merchant.id,
        name=merchant.name,
        industry=merchant.industry,
        status=merchant.status,
        version=merchant.version,
    )
    await publish(session, payload, aggregate_id=merchant.id, merchant_id=merchant.id)


def _store_fields(store: Store) -> dict[str, object]:
    return {
        "store_id": store.id,
        "merchant_id": store.merchant_id,
        "code": store.code,
        "name": store.name,
        "address": store.address,
        "timezone": store.timezone,
        "business_hours": store.business_hours,
        "region_id": store.region_id,
        "status": store.status,
        "version": store.version,
    }


async def store_created(session: AsyncSession, store: Store) -> None:
    payload = ev.StoreCreated.model_validate(_store_fields(store))
    await publish(
        session, payload, aggregate_id=store.id, merchant_id=store.merchant_id, store_id=store.id
    )


async def store_updated(session: AsyncSession, store: Store) -> None:
    payload = ev.StoreUpdated.model_validate(_store_fields(store))
    await publish(
        session, payload, aggregate_id=store.id, merchant_id=store.merchant_id, store_id=store.id
    )


async def store_status_changed(
    session: AsyncSession, store: Store, previous: str, reason: str | None
) -> None:
    payload = ev.StoreStatusChanged(
        store_id=store.id,
        merchant_id=store.merchant_id,
        status=store.status,
        previous_status=previous,
        reason=reason,
        version=store.version,
    )
    await publish(
        session, payload, aggregate_id=store.id, merchant_id=store.merchant_id, store_id=store.id
    )


async def staff_created(session: AsyncSession, staff: Staff) -> None:
    payload = ev.StaffCreated(
        staff_id=staff.id,
        merchant_id=staff.merchant_id,
        name=staff.name,
        role=staff.role,
        scopes=sorted(staff.scopes),
        store_id=staff.store_id,
        region_ids=list(staff.region_ids),
        status=staff.status,
        super_admin=staff.super_admin,
        version=staff.version,
    )
    await publish(
        session,
        payload,
        aggregate_id=staff.id,
        merchant_id=staff.merchant_id,
        store_id=staff.store_id,
    )


async def staff_updated(session: AsyncSession, staff: Staff) -> None:
    payload = ev.StaffUpdated(
        staff_id=staff.id, merchant_id=staff.merchant_id, name=staff.name, version=staff.version
    )
    await publish(
        session,
        payload,
        aggregate_id=staff.id,
        merchant_id=staff.merchant_id,
        store_id=staff.store_id,
    )


async def staff_role_changed(session: AsyncSession, staff: Staff, previous_role: str) -> None:
    payload = ev.StaffRoleChanged(
        staff_id=staff.id,
        merchant_id=staff.merchant_id,
        role=staff.role,
        previous_role=previous_role,
        scopes=sorted(staff.scopes),
        store_id=staff.store_id,
        region_ids=list(staff.region_ids),
        super_admin=staff.super_admin,
        version=staff.version,
    )
    await publish(
        session,
        payload,
        aggregate_id=staff.id,
        merchant_id=staff.merchant_id,
        store_id=staff.store_id,
    )


async def staff_status_changed(session: AsyncSession, staff: Staff, previous: str) -> None:
    payload = ev.StaffStatusChanged(
        staff_id=staff.id,
        merchant_id=staff.merchant_id,
        status=staff.status,
        previous_status=previous,
        version=staff.version,
    )
    await publish(
        session,
        payload,
        aggregate_id=staff.id,
        merchant_id=staff.merchant_id,
        store_id=staff.store_id,
    )


async def staff_sign_in_unlocked(session: AsyncSession, staff: Staff, by: uuid.UUID) -> None:
    payload = ev.StaffSignInUnlocked(
        staff_id=staff.id, merchant_id=staff.merchant_id, unlocked_by=by, version=staff.version
    )
    await publish(
        session,
        payload,
        aggregate_id=staff.id,
        merchant_id=staff.merchant_id,
        store_id=staff.store_id,
    )
