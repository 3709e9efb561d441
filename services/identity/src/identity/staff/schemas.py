"""Staff requests and responses. Phones and ID numbers are masked unless the caller is the
account itself or an HQ admin."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from identity.common.schemas import VersionedUpdate
from identity.common.validation import IdNumber, Password, Phone, mask_id_number, mask_phone
from identity.staff.models import Staff
from identity.verification.schemas import CodeField
from servicekit.auth import Role

StaffStatus = Literal["active", "disabled", "deactivated"]


class Assignment(BaseModel):
    """Role and reach: ``store_id`` for store managers and cashiers, ``region_ids`` for
    regional managers, neither for HQ admins. ``scopes`` default to the role's."""

    role: Role
    store_id: uuid.UUID | None = None
    region_ids: list[uuid.UUID] = Field(default_factory=list, max_length=100)
    scopes: list[str] | None = Field(default=None, max_length=50)


class StaffCreate(Assignment):
    model_config = ConfigDict(extra="forbid")

    phone: Phone
    name: str = Field(min_length=1, max_length=100)
    id_number: IdNumber | None = Field(default=None, min_length=4, max_length=32)
    password: Password


class StaffUpdate(VersionedUpdate):
    name: str | None = Field(default=None, min_length=1, max_length=100)
    id_number: IdNumber | None = Field(default=None, min_length=4, max_length=32)


class RoleChange(Assignment):
    model_config = ConfigDict(extra="forbid")

    version: int | None = Field(
        default=None, ge=1, description="Required: the version you read. Missing: 428; stale: 409."
    )


class StaffOut(BaseModel):
    id: uuid.UUID
    merchant_id: uuid.UUID
    phone: str
    name: str
    id_number: str | None
    role: Role
    scopes: list[str]
    store_id: uuid.UUID | None
    region_ids: list[uuid.UUID]
    status: StaffStatus
    super_admin: bool
    version: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, staff: Staff, *, reveal_phone: bool = False) -> StaffOut:
        return cls(
            id=staff.id,
            merchant_id=staff.merchant_id,
            phone=staff.phone if reveal_phone else mask_phone(staff.phone),
            name=staff.name,
            id_number=mask_id_number(staff.id_number),
            role=Role(staff.role),
            scopes=sorted(staff.scopes),
            store_id=staff.store_id,
            region_ids=list(staff.region_ids),
            status=staff.status,
            super_admin=staff.super_admin,
            version=staff.version,
            created_at=staff.created_at,
            updated_at=staff.updated_at,
        )


class MerchantSummary(BaseModel):
    id: uuid.UUID
    code: str
    name: str


class MeOut(BaseModel):
    staff: StaffOut
    merchant: MerchantSummary
    store_ids: list[uuid.UUID] | None = Field(description="null: every store of the merchant.")


class PhoneChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    phone: Phone
    code: str = CodeField


class Deactivation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = CodeField


class UnlockOut(BaseModel):
    staff_id: uuid.UUID
    was_throttled: bool = Field(description="Whether a sign-in delay was in force and lifted.")
