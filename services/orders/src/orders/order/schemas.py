"""Request and response models of the orders API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, Strict, model_validator
from pydantic_core import PydanticCustomError

from contracts.events.orders import Channel, TenderMethod
from contracts.money import Money

OrderStatus = Literal[
    "open", "placed", "paid", "completed", "cancelled", "partially_refunded", "refunded"
]


class LineIn(BaseModel):
    """One line: a product by id or by barcode. ``discount`` and ``unit_price`` (a price
    override) need the ``orders:discount`` permission."""

    model_config = ConfigDict(extra="forbid")

    product_id: uuid.UUID | None = None
    barcode: Annotated[str, Field(min_length=1, max_length=32)] | None = None
    quantity: Annotated[int, Strict(), Field(gt=0, le=100_000)]
    notes: Annotated[str, Field(max_length=500)] | None = None
    modifiers: Annotated[list[Annotated[str, Field(max_length=100)]], Field(max_length=50)] = []
    discount: Money | None = Field(default=None, description="Manual discount on the line.")
    unit_price: Money | None = Field(default=None, description="Price override per unit.")

    @model_validator(mode="after")
    def _one_reference(self) -> LineIn:
        if (self.product_id is None) == (self.barcode is None):
            raise PydanticCustomError(
                "product_or_barcode", "give exactly one of product_id and barcode"
            )
        return self


class OrderCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: uuid.UUID = Field(description="Client-generated; resending the same order is safe.")
    channel: Channel
    store_id: uuid.UUID
    member_id: uuid.UUID | None = None
    table: Annotated[str, Field(min_length=1, max_length=32)] | None = None
    people_count: Annotated[int, Strict(), Field(ge=1, le=1000)] | None = None
    lines: Annotated[list[LineIn], Field(min_length=1, max_length=500)]
    occurred_at: AwareDatetime = Field(description="When the client took the order.")


class CancelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Annotated[str, Field(max_length=500)] | None = None


class LineOut(BaseModel):
    line_id: uuid.UUID
    product_id: uuid.UUID
    name: str
    quantity: int
    unit_price: Money
    discount: Money
    total: Money
    price_overridden: bool
    kitchen_station: str | None
    notes: str | None
    modifiers: list[str]


class TenderOut(BaseModel):
    payment_id: uuid.UUID
    method: TenderMethod
    amount: Money
    recorded_at: datetime


class ReturnedLineOut(BaseModel):
    product_id: uuid.UUID
    quantity: int


class RefundOut(BaseModel):
    refund_id: uuid.UUID
    payment_id: uuid.UUID
    method: TenderMethod
    amount: Money
    returned_lines: list[ReturnedLineOut]
    recorded_at: datetime


class OrderSummary(BaseModel):
    id: uuid.UUID
    store_id: uuid.UUID
    channel: Channel
    member_id: uuid.UUID | None
    table: str | None
    people_count: int | None
    status: OrderStatus
    subtotal: Money
    discount_total: Money
    total: Money
    paid_total: Money
    refunded_total: Money
    cancel_reason: str | None
    occurred_at: datetime
    placed_at: datetime | None
    paid_at: datetime | None
    completed_at: datetime | None
    cancelled_at: datetime | None
    version: int
    created_at: datetime


class OrderOut(OrderSummary):
    lines: list[LineOut]
    tenders: list[TenderOut]
    refunds: list[RefundOut]
