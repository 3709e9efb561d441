"""Request and response models of the stock API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, Strict

from servicekit.text import StorableStr

MovementKind = Literal[
    "sale", "refund_return", "stock_in", "adjustment", "count", "transfer_out", "transfer_in"
]
Quantity = Annotated[int, Strict(), Field(gt=0, le=10**9)]
Note = Annotated[StorableStr, Field(min_length=1, max_length=500)]


class StockInLine(BaseModel):
    model_config = ConfigDict(extra="forbid")

    product_id: uuid.UUID
    quantity: Quantity
    unit: Annotated[StorableStr, Field(min_length=1, max_length=32)] | None = Field(
        default=None, description="A pack of the product ('case'): quantity counts packs."
    )


class StockIn(BaseModel):
    """Goods received into a store against a document (delivery note, purchase order)."""

    model_config = ConfigDict(extra="forbid")

    document: Note | None = None
    occurred_at: AwareDatetime
    lines: Annotated[list[StockInLine], Field(min_length=1, max_length=500)]


class Adjustment(BaseModel):
    """A correction (breakage, theft, expiry): a signed, non-zero change with its reason."""

    model_config = ConfigDict(extra="forbid")

    product_id: uuid.UUID
    quantity: Annotated[int, Strict(), Field(ge=-(10**9), le=10**9)]
    reason: Note
    reference: Note | None = None
    occurred_at: AwareDatetime


class CountLine(BaseModel):
    model_config = ConfigDict(extra="forbid")

    product_id: uuid.UUID
    counted: Annotated[int, Strict(), Field(ge=0, le=10**9)]


class Count(BaseModel):
    """A physical count: on-hand becomes the counted figure as of ``occurred_at``."""

    model_config = ConfigDict(extra="forbid")

    reference: Note | None = None
    occurred_at: AwareDatetime
    lines: Annotated[list[CountLine], Field(min_length=1, max_length=2000)]


class ThresholdSet(BaseModel):
    """The low-stock threshold; ``null`` turns alerts off for this product in this store."""

    model_config = ConfigDict(extra="forbid")

    threshold: Annotated[int, Strict(), Field(ge=0, le=10**9)] | None


class MovementOut(BaseModel):
    id: uuid.UUID
    store_id: uuid.UUID
    product_id: uuid.UUID
    kind: MovementKind
    quantity: int = Field(description="Signed change; for a count, the counted figure.")
    reason: str | None
    reference: str | None
    occurred_at: datetime
    recorded_at: datetime
    absorbed: bool = Field(description="Dated before the latest count, so it changed nothing.")
    on_hand_after: int


class MovementsOut(BaseModel):
    movements: list[MovementOut]


class StockLevelOut(BaseModel):
    store_id: uuid.UUID
    product_id: uuid.UUID
    on_hand: int
    negative: bool = Field(description="More was sold than the ledger holds: recount soon.")
    low_threshold: int | None
    low: bool
    last_count_at: datetime | None
