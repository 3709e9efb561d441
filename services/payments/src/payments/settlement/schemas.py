"""Request and response bodies of the settlement endpoints."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from payments.models import SettlementAccount


class FeeConfigUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fee_rate_bps: int = Field(ge=0, le=10_000, strict=True, description="38 is 0.38%.")
    version: int | None = Field(
        default=None, ge=0, description="The version read (0 before the first change)."
    )


class FeeConfigOut(BaseModel):
    fee_rate_bps: int
    is_default: bool
    version: int


class SettlementAccountCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["bank", "provider"]
    institution: str = Field(min_length=1, max_length=100, description="Bank or provider name.")
    account_number: str = Field(
        min_length=4,
        max_length=64,
        pattern=r"^[0-9A-Za-z-]+$",
        description="Bank account or provider merchant number.",
    )
    holder_name: str = Field(min_length=1, max_length=200)


def mask(number: str) -> str:
    """Only the last four characters are ever shown."""
    return "*" * max(len(number) - 4, 4) + number[-4:]


class SettlementAccountOut(BaseModel):
    id: uuid.UUID
    kind: Literal["bank", "provider"]
    institution: str
    account_number_masked: str
    holder_name: str
    active: bool
    created_at: datetime
    deactivated_at: datetime | None

    @classmethod
    def of(cls, a: SettlementAccount) -> SettlementAccountOut:
        return cls(
            id=a.id,
            kind=a.kind,
            institution=a.institution,
            account_number_masked=mask(a.account_number),
            holder_name=a.holder_name,
            active=a.active,
            created_at=a.created_at,
            deactivated_at=a.deactivated_at,
        )
