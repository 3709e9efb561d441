"""Request and response models of stocktaking."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, Strict, model_validator

from contracts.money import Money
from servicekit.text import StorableStr

StocktakeStatus = Literal["open", "approved", "cancelled"]


class StocktakeCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: uuid.UUID | None = None
    category_id: uuid.UUID | None = Field(
        default=None,
        description="Count this category and its subtree only; every product if absent.",
    )


class CountEntry(BaseModel):
    """A scan or a typed figure: ``quantity`` is added to what other devices counted; a
    negative quantity takes back a mis-scan."""

    model_config = ConfigDict(extra="forbid")

    product_id: uuid.UUID | None = None
    barcode: Annotated[StorableStr, Field(min_length=1, max_length=64)] | None = None
    quantity: Annotated[int, Strict(), Field(ge=-(10**9), le=10**9)]

    @model_validator(mode="after")
    def _one_reference(self) -> CountEntry:
        if (self.product_id is None) == (self.barcode is None):
            raise ValueError("give either product_id or barcode")
        return self


class CountsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    device_id: Annotated[StorableStr, Field(min_length=1, max_length=64)] | None = None
    counted_at: AwareDatetime | None = Field(
        default=None, description="When the device counted (offline devices); now if absent."
    )
    lines: Annotated[list[CountEntry], Field(min_length=1, max_length=2000)]

    @model_validator(mode="after")
    def _plausible_time(self) -> CountsIn:
        if self.counted_at is not None and not 2000 <= self.counted_at.year < 2100:
            raise ValueError("counted_at must be between 2000 and 2099")
        return self


class Transition(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Annotated[int, Strict(), Field(ge=1)]


class StocktakeOut(BaseModel):
    id: uuid.UUID
    store_id: uuid.UUID
    category_id: uuid.UUID | None
    status: StocktakeStatus
    started_at: datetime
    approved_at: datetime | None
    approved_by: uuid.UUID | None
    products: int = Field(description="Products in the count.")
    counted: int = Field(description="Products counted so far.")
    version: int


class CountedLine(BaseModel):
    product_id: uuid.UUID
    counted: int


class CountsOut(BaseModel):
    stocktake_id: uuid.UUID
    lines: list[CountedLine] = Field(description="Each product's total after these entries.")


class DiscrepancyLine(BaseModel):
    product_id: uuid.UUID
    sku: str
    name: str
    book_quantity: int = Field(description="On hand when the count started.")
    moved_since_start: int = Field(description="Sales, receipts... up to the product's count.")
    expected: int
    counted: int | None
    difference: int | None = Field(description="Counted minus expected.")
    unit_cost: Money | None = Field(description="Shown with catalog:manage.")
    difference_value: Money | None = Field(description="Difference at cost (catalog:manage).")


class DiscrepancyReport(BaseModel):
    stocktake: StocktakeOut
    lines: list[DiscrepancyLine]
    uncounted: int
    total_difference_value: list[Money] = Field(description="Per currency (catalog:manage).")
