"""Store requests and responses."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from identity.common.schemas import VersionedUpdate
from identity.common.validation import Timezone

StoreStatus = Literal["active", "read_only", "archived"]
_HHMM = r"^([01]\d|2[0-3]):[0-5]\d$"


class BusinessHours(BaseModel):
    model_config = ConfigDict(extra="forbid")

    day: Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    opens: str = Field(pattern=_HHMM, examples=["09:00"])
    closes: str = Field(
        pattern=_HHMM, examples=["22:00"], description="Before opens: closes after midnight."
    )

    @model_validator(mode="after")
    def _not_empty(self) -> BusinessHours:
        if self.opens == self.closes:
            raise ValueError("opening and closing times must differ")
        return self


class StoreCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(pattern=r"^[A-Za-z0-9_-]{1,32}$", description="Unique within the merchant.")
    name: str = Field(min_length=1, max_length=200)
    address: str = Field(default="", max_length=500)
    timezone: Timezone = "Asia/Shanghai"
    business_hours: list[BusinessHours] = Field(default_factory=list, max_length=21)
    region_id: uuid.UUID | None = None


class StoreUpdate(VersionedUpdate):
    code: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,32}$")
    name: str | None = Field(default=None, min_length=1, max_length=200)
    address: str | None = Field(default=None, max_length=500)
    timezone: Timezone | None = None
    business_hours: list[BusinessHours] | None = Field(default=None, max_length=21)
    region_id: uuid.UUID | None = Field(default=None, description="null removes the region.")


class StoreStatusChange(VersionedUpdate):
    status: StoreStatus
    reason: str | None = Field(default=None, max_length=500)


class StoreOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    merchant_id: uuid.UUID
    code: str
    name: str
    address: str
    timezone: str
    business_hours: list[BusinessHours]
    region_id: uuid.UUID | None
    status: StoreStatus
    version: int
    created_at: datetime
    updated_at: datetime
