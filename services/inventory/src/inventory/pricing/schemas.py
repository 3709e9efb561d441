"""Request and response models of store groups and HQ price changes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, NaiveDatetime, Strict, model_validator

from contracts.money import Money
from inventory.catalog.schemas import Price
from servicekit.text import StorableStr

Name = Annotated[StorableStr, Field(min_length=1, max_length=100)]
Stores = Annotated[list[uuid.UUID], Field(min_length=1, max_length=5000)]
PriceChangeStatus = Literal["scheduled", "applied", "cancelled"]


class StoreGroupCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: uuid.UUID | None = None
    name: Name
    store_ids: Stores


class StoreGroupUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Annotated[int, Strict(), Field(ge=1)]
    name: Name | None = None
    store_ids: Stores | None = None


class StoreGroupOut(BaseModel):
    id: uuid.UUID
    name: str
    store_ids: list[uuid.UUID]
    version: int


class PriceLine(BaseModel):
    model_config = ConfigDict(extra="forbid")

    product_id: uuid.UUID
    price: Price


class PriceChangeCreate(BaseModel):
    """New prices for every store (``all_stores``) or one store group, at ``effective_at``
    (a wall-clock time, read in each store's own timezone) or at once when absent."""

    model_config = ConfigDict(extra="forbid")

    id: uuid.UUID | None = None
    all_stores: bool = False
    store_group_id: uuid.UUID | None = None
    effective_at: NaiveDatetime | None = Field(
        default=None, description="Local time without offset, e.g. 2026-04-01T00:00:00."
    )
    lines: Annotated[list[PriceLine], Field(min_length=1, max_length=1000)]

    @model_validator(mode="after")
    def _one_target(self) -> PriceChangeCreate:
        if self.all_stores == (self.store_group_id is not None):
            raise ValueError("give either all_stores: true or a store_group_id")
        if self.effective_at is not None and not 2000 <= self.effective_at.year < 2100:
            raise ValueError("effective_at must be between 2000 and 2099")
        return self


class PriceChangeStoreOut(BaseModel):
    store_id: uuid.UUID
    due_at: datetime
    applied_at: datetime | None
    cancelled: bool


class PriceChangeOut(BaseModel):
    id: uuid.UUID
    all_stores: bool
    store_group_id: uuid.UUID | None
    effective_at: datetime | None
    status: PriceChangeStatus
    lines: list[PriceLine]
    stores: list[PriceChangeStoreOut]
    created_at: datetime


class PriceLineOut(BaseModel):
    product_id: uuid.UUID
    price: Money
