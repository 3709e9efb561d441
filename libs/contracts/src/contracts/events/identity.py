"""Events published by identity: merchants, stores and staff accounts.

Payloads carry what other services need to mirror these aggregates (names, statuses, roles,
store assignments) and nothing secret: no password hashes, no verification codes, no ID
numbers and no phone numbers. Every payload carries the aggregate's ``version`` so a consumer
can ignore an event older than what it already holds.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import Field

from contracts.registry import EventPayload, event

MerchantStatus = Literal["active", "suspended", "closed"]
StoreStatus = Literal["active", "read_only", "archived"]
StaffStatus = Literal["active", "disabled", "deactivated"]
StaffRole = Literal["hq_admin", "regional_manager", "store_manager", "cashier"]


class BusinessHours(EventPayload):
    """Opening hours of one weekday, in the store's timezone; ``closes`` before ``opens``
    means the store closes after midnight."""

    day: Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    opens: str = Field(description="HH:MM")
    closes: str = Field(description="HH:MM")


@event(type="identity.merchant.created", version=1)
class MerchantCreated(EventPayload):
    merchant_id: uuid.UUID
    code: str = Field(description="The short merchant code staff sign in with.")
    name: str
    credit_code: str = Field(description="Unified social credit code (public registration id).")
    industry: str
    status: MerchantStatus
    version: int
    created_at: datetime


@event(type="identity.merchant.updated", version=1)
class MerchantUpdated(EventPayload):
    merchant_id: uuid.UUID
    name: str
    industry: str
    status: MerchantStatus
    version: int


@event(type="identity.store.created", version=1)
class StoreCreated(EventPayload):
    store_id: uuid.UUID
    merchant_id: uuid.UUID
    code: str
    name: str
    address: str
    timezone: str = Field(description="IANA timezone name.")
    business_hours: list[BusinessHours]
    region_id: uuid.UUID | None
    status: StoreStatus
    version: int


@event(type="identity.store.updated", version=1)
class StoreUpdated(EventPayload):
    store_id: uuid.UUID
    merchant_id: uuid.UUID
    code: str
    name: str
    address: str
    timezone: str
    business_hours: list[BusinessHours]
    region_id: uuid.UUID | None
    status: StoreStatus
    version: int


@event(type="identity.store.status_changed", version=1)
class StoreStatusChanged(EventPayload):
    """A store was locked (``read_only``: no new sales, refunds or stock moves until it is
    unlocked), reopened or archived. Services refuse writes to a store that is not active."""

    store_id: uuid.UUID
    merchant_id: uuid.UUID
    status: StoreStatus
    previous_status: StoreStatus
    reason: str | None = None
    version: int


@event(type="identity.staff.created", version=1)
class StaffCreated(EventPayload):
    staff_id: uuid.UUID
    merchant_id: uuid.UUID
    name: str
    role: StaffRole
    scopes: list[str]
    store_id: uuid.UUID | None
    region_ids: list[uuid.UUID]
    status: StaffStatus
    super_admin: bool
    version: int


@event(type="identity.staff.updated", version=1)
class StaffUpdated(EventPayload):
    staff_id: uuid.UUID
    merchant_id: uuid.UUID
    name: str
    version: int


@event(type="identity.staff.role_changed", version=1)
class StaffRoleChanged(EventPayload):
    staff_id: uuid.UUID
    merchant_id: uuid.UUID
    role: StaffRole
    previous_role: StaffRole
    scopes: list[str]
    store_id: uuid.UUID | None
    region_ids: list[uuid.UUID]
    super_admin: bool
    version: int


@event(type="identity.staff.status_changed", version=1)
class StaffStatusChanged(EventPayload):
    staff_id: uuid.UUID
    merchant_id: uuid.UUID
    status: StaffStatus
    previous_status: StaffStatus
    version: int


@event(type="identity.staff.sign_in_unlocked", version=1)
class StaffSignInUnlocked(EventPayload):
    """A manager lifted the sign-in delay that failed attempts had put on the account's phone.
    The account itself is unchanged: ``version`` is the one it had."""

    staff_id: uuid.UUID
    merchant_id: uuid.UUID
    unlocked_by: uuid.UUID
    version: int
