"""Merchant sign-up, merchant requests and responses."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from identity.common.schemas import VersionedUpdate
from identity.common.validation import IdNumber, Password, Phone, mask_id_number, mask_phone
from identity.merchants import credit_code
from identity.merchants.models import Merchant
from identity.staff.schemas import StaffOut
from identity.stores.schemas import StoreCreate, StoreOut
from identity.verification.schemas import CodeField

Industry = Literal["restaurant", "cafe", "bakery", "retail", "grocery", "beauty", "other"]
CreditCode = Annotated[str, AfterValidator(credit_code.normalize)]


class MerchantIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    credit_code: CreditCode = Field(description="Unified social credit code (GB 32100-2015).")
    legal_rep_name: str = Field(min_length=1, max_length=100)
    legal_rep_id_number: IdNumber = Field(min_length=6, max_length=32)
    contact_phone: Phone | None = Field(default=None, description="Defaults to the admin's.")
    industry: Industry


class AdminIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    phone: Phone
    name: str = Field(min_length=1, max_length=100)
    password: Password
    code: str = CodeField


class SignupRequest(BaseModel):
    """A merchant, its first store and its super admin, whose phone is proven with a
    ``signup`` code."""

    model_config = ConfigDict(extra="forbid")

    merchant: MerchantIn
    store: StoreCreate
    admin: AdminIn


class MerchantOut(BaseModel):
    id: uuid.UUID
    code: str = Field(description="Staff sign in with this code.")
    name: str
    credit_code: str
    legal_rep_name: str
    legal_rep_id_number: str = Field(description="Masked.")
    contact_phone: str
    industry: str
    status: Literal["active", "suspended", "closed"]
    version: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, merchant: Merchant, *, reveal_phone: bool = False) -> MerchantOut:
        return cls(
            id=merchant.id,
            code=merchant.code,
            name=merchant.name,
            credit_code=merchant.credit_code,
            legal_rep_name=merchant.legal_rep_name,
            legal_rep_id_number=mask_id_number(merchant.legal_rep_id_number) or "",
            contact_phone=(
                merchant.contact_phone if reveal_phone else mask_phone(merchant.contact_phone)
            ),
            industry=merchant.industry,
            status=merchant.status,
            version=merchant.version,
            created_at=merchant.created_at,
            updated_at=merchant.updated_at,
        )


class SignupOut(BaseModel):
    merchant: MerchantOut
    store: StoreOut
    admin: StaffOut


class MerchantUpdate(VersionedUpdate):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    contact_phone: Phone | None = None
    industry: Industry | None = None
