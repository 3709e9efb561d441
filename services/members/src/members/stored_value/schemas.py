"""Request and response bodies of the stored-value endpoints."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from contracts.money import Money
from members.stored_value.models import BonusRule, StoredValueEntry
from servicekit.pagination import Page

LedgerKind = Literal["recharge", "bonus", "spend", "refund", "adjustment", "import"]


class BonusRuleCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    threshold: Money = Field(description="A recharge of at least this much earns the bonus.")
    bonus: Money


class BonusRuleUpdate(BonusRuleCreate):
    version: int = Field(ge=1, description="The version read.")


class BonusRuleOut(BaseModel):
    id: uuid.UUID
    threshold: Money
    bonus: Money
    version: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, r: BonusRule) -> BonusRuleOut:
        return cls(
            id=r.id,
            threshold=Money.of(r.threshold, r.currency),
            bonus=Money.of(r.bonus, r.currency),
            version=r.version,
            created_at=r.created_at,
            updated_at=r.updated_at,
        )


class RechargePreview(BaseModel):
    """What a recharge of ``amount`` would credit under today's rules."""

    amount: Money
    bonus: Money
    total: Money
    bonus_rule_id: uuid.UUID | None


class StoredValueBalance(BaseModel):
    principal: Money
    bonus: Money
    balance: Money


class LedgerEntryOut(BaseModel):
    id: uuid.UUID
    kind: LedgerKind
    payment_id: uuid.UUID | None
    refund_id: uuid.UUID | None
    store_id: uuid.UUID | None
    principal: Money = Field(description="Signed: negative for a spend.")
    bonus: Money = Field(description="Signed: negative for a spend.")
    principal_after: Money
    bonus_after: Money
    note: str | None = Field(description="The reason of an adjustment.")
    created_at: datetime

    @classmethod
    def of(cls, e: StoredValueEntry) -> LedgerEntryOut:
        def money(amount: int) -> Money:
            return Money.of(amount, e.currency)

        return cls(
            id=e.id,
            kind=e.kind,
            payment_id=e.payment_id,
            refund_id=e.source_id if e.kind == "refund" else None,
            store_id=e.at_store_id,
            principal=money(e.principal),
            bonus=money(e.bonus),
            principal_after=money(e.principal_after),
            bonus_after=money(e.bonus_after),
            note=e.note,
            created_at=e.created_at,
        )


class StoredValueLedgerPage(Page[LedgerEntryOut]):
    """A page of the ledger, newest first, with the account's current balance (absent
    before the first recharge)."""

    account: StoredValueBalance | None


class RechargeOut(BaseModel):
    payment_id: uuid.UUID
    store_id: uuid.UUID | None
    amount: Money
    bonus: Money
    created_at: datetime


class PointsRateUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    points_per_unit: int = Field(
        ge=1, le=1_000_000, strict=True, description="Points that pay one yuan (100 fen)."
    )
    version: int | None = Field(
        default=None, ge=0, description="The version read (0 before the first change)."
    )


class PointsRateOut(BaseModel):
    """Whether points pay, and at what rate: an amount costs
    ``ceil(amount * points_per_unit / 100)`` points."""

    accepted: bool
    points_per_unit: int | None
    version: int


class AdjustmentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    principal: Money = Field(description="Signed change of the paid part.")
    bonus: Money = Field(description="Signed change of the bonus part.")
    note: str = Field(min_length=1, max_length=500, description="Why: kept in the ledger.")
