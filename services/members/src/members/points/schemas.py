"""Request and response bodies of the points endpoints."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from members.models import PointsEntry
from servicekit.pagination import Page


class PointsRuleUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    points_per_unit: int = Field(ge=0, le=1_000_000, strict=True)
    unit_amount: int = Field(
        ge=1, le=10**12, strict=True, description="Minor units per step (100 = 1 yuan)."
    )
    version: int | None = Field(
        default=None, ge=0, description="The version read (0 before the first change)."
    )


class PointsRuleOut(BaseModel):
    points_per_unit: int
    unit_amount: int
    version: int
    is_default: bool


class PointsEntryOut(BaseModel):
    id: uuid.UUID
    order_id: uuid.UUID | None = Field(description="None for an opening balance (``import``).")
    kind: Literal["award", "reversal", "import", "redemption", "redemption_refund"]
    refund_id: uuid.UUID | None
    import_id: uuid.UUID | None = Field(
        default=None, description="The member import that carried this opening balance over."
    )
    payment_id: uuid.UUID | None = Field(
        default=None, description="The payment points paid (redemptions)."
    )
    points: int = Field(description="Signed: negative for a reversal or a redemption.")
    balance_after: int
    created_at: datetime

    @classmethod
    def of(cls, e: PointsEntry) -> PointsEntryOut:
        return cls(
            id=e.id,
            order_id=e.order_id,
            kind=e.kind,
            refund_id=e.source_id if e.kind in ("reversal", "redemption_refund") else None,
            import_id=e.source_id if e.kind == "import" else None,
            payment_id=e.source_id if e.kind == "redemption" else None,
            points=e.points,
            balance_after=e.balance_after,
            created_at=e.created_at,
        )


class PointsLedgerPage(Page[PointsEntryOut]):
    """A page of the ledger, newest first, with the member's current balance."""

    balance: int
