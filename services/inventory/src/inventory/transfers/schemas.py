"""Request and response models of transfers, stock across stores and replenishment."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict

from servicekit.text import StorableStr

TransferStatus = Literal["requested", "shipped", "received", "cancelled"]
Quantity = Annotated[int, Strict(), Field(gt=0, le=10**9)]
Version = Annotated[int, Strict(), Field(ge=1)]


class TransferLineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    product_id: uuid.UUID
    quantity: Quantity


class TransferCreate(BaseModel):
    """The store in the path asks ``from_store_id`` for goods."""

    model_config = ConfigDict(extra="forbid")

    id: uuid.UUID | None = None
    from_store_id: uuid.UUID
    note: Annotated[StorableStr, Field(max_length=500)] | None = None
    lines: Annotated[list[TransferLineIn], Field(min_length=1, max_length=500)]


class ShipmentLineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    product_id: uuid.UUID
    quantity: Annotated[int, Strict(), Field(ge=0, le=10**9)]


class TransferStep(BaseModel):
    """Ship or receive; ``lines`` give the quantities when they differ (a product left out
    ships as requested, or is received as shipped)."""

    model_config = ConfigDict(extra="forbid")

    version: Version
    lines: Annotated[list[ShipmentLineIn], Field(max_length=500)] = []


class Transition(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Version


class TransferLineOut(BaseModel):
    product_id: uuid.UUID
    requested: int
    shipped: int | None
    received: int | None
    discrepancy: int | None = Field(description="Received minus shipped (negative: missing).")


class TransferOut(BaseModel):
    id: uuid.UUID
    from_store_id: uuid.UUID
    to_store_id: uuid.UUID
    status: TransferStatus
    note: str | None
    lines: list[TransferLineOut]
    version: int
    created_at: datetime
    shipped_at: datetime | None
    received_at: datetime | None


class StoreStockOut(BaseModel):
    store_id: uuid.UUID
    product_id: uuid.UUID
    on_hand: int
    in_transit: int = Field(description="Shipped to this store and not yet received.")
    low_threshold: int | None
    low: bool


class Suggestion(BaseModel):
    product_id: uuid.UUID
    sold: int = Field(description="Sold (net of returns) over the window.")
    daily_average: float
    on_hand: int
    in_transit: int
    low_threshold: int | None
    target: int = Field(description="Enough for the cover days, and above the threshold.")
    suggested: int = Field(description="Singles to order.")
    pack_unit: str | None
    packs: int | None = Field(description="Whole packs that cover ``suggested``.")


class Replenishment(BaseModel):
    store_id: uuid.UUID
    days: int
    cover_days: int
    items: list[Suggestion]
