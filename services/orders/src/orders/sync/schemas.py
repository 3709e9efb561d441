"""Request and response models of ``/v1/orders/sync``.

A batch's orders are validated one by one (a malformed order is rejected alone, the rest of
the batch goes through), so the batch model takes them as objects and :class:`SyncOrder`
validates each."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from contracts.events.orders import Channel, TenderMethod
from contracts.money import Money
from orders.order.schemas import (
    MAX_LINES,
    MAX_MODIFIER_LENGTH,
    MAX_MODIFIERS,
    MAX_NOTES_LENGTH,
    MAX_QUANTITY,
    MAX_TABLE_LENGTH,
    Occurred,
    OrderSummary,
    Printable,
    TillId,
)

#: Orders per batch.
MAX_BATCH_ORDERS = 200
MAX_TENDERS = 10
MAX_REFUNDS = 10
MAX_REFERENCE_LENGTH = 64


def _positive(value: Money) -> Money:
    if value.amount <= 0:
        raise PydanticCustomError("amount_not_positive", "must be above zero")
    return value


class SyncLine(BaseModel):
    """A line as the till sold it: ``unit_price`` is what it charged per unit."""

    model_config = ConfigDict(extra="forbid")

    product_id: uuid.UUID | None = None
    barcode: Annotated[str, Field(min_length=1, max_length=32)] | None = None
    quantity: Annotated[int, Field(strict=True, gt=0, le=MAX_QUANTITY)]
    unit_price: Money
    discount: Money | None = None
    notes: Annotated[str, Field(max_length=MAX_NOTES_LENGTH), Printable] | None = None
    modifiers: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=MAX_MODIFIER_LENGTH), Printable]],
        Field(max_length=MAX_MODIFIERS),
    ] = []

    @model_validator(mode="after")
    def _check(self) -> SyncLine:
        if (self.product_id is None) == (self.barcode is None):
            raise PydanticCustomError(
                "product_or_barcode", "give exactly one of product_id and barcode"
            )
        if self.unit_price.is_negative or (self.discount is not None and self.discount.is_negative):
            raise PydanticCustomError("negative_amount", "amounts must not be negative")
        return self


class OfflineTender(BaseModel):
    """A payment the till took offline: cash, or a QR/card payment its terminal completed
    (``provider_reference`` is the provider's transaction id)."""

    model_config = ConfigDict(extra="forbid")

    payment_id: uuid.UUID = Field(description="Client-generated; the payment's id in payments.")
    method: TenderMethod
    amount: Money
    tendered: Money | None = Field(default=None, description="Cash handed over (cash only).")
    provider_reference: (
        Annotated[str, Field(min_length=1, max_length=MAX_REFERENCE_LENGTH), Printable] | None
    ) = None
    occurred_at: Occurred | None = None

    @model_validator(mode="after")
    def _check(self) -> OfflineTender:
        _positive(self.amount)
        if self.method == "cash":
            if self.provider_reference is not None:
                raise PydanticCustomError("cash_has_no_reference", "cash has no provider reference")
        else:
            if self.tendered is not None:
                raise PydanticCustomError("cash_only", "only cash carries a tendered amount")
            if self.provider_reference is None:
                raise PydanticCustomError(
                    "provider_reference_required",
                    "a QR or card payment needs the provider's reference",
                )
        if self.tendered is not None and (
            self.tendered.currency != self.amount.currency or self.tendered < self.amount
        ):
            raise PydanticCustomError("insufficient_tender", "less than the amount was given")
        return self


class ReturnedLineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    product_id: uuid.UUID
    quantity: Annotated[int, Field(strict=True, gt=0, le=MAX_QUANTITY)]


class OfflineRefund(BaseModel):
    """Money the till gave back offline from one of the order's payments."""

    model_config = ConfigDict(extra="forbid")

    refund_id: uuid.UUID
    payment_id: uuid.UUID
    amount: Money
    returned_lines: Annotated[list[ReturnedLineIn], Field(max_length=MAX_LINES)] = []
    reason: Annotated[str, Field(max_length=500), Printable] | None = None
    occurred_at: Occurred

    @model_validator(mode="after")
    def _check(self) -> OfflineRefund:
        _positive(self.amount)
        return self


class SyncOrder(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: uuid.UUID = Field(description="Client-generated; the key of the order everywhere.")
    channel: Channel = "pos"
    member_id: uuid.UUID | None = None
    table: Annotated[str, Field(min_length=1, max_length=MAX_TABLE_LENGTH), Printable] | None = None
    people_count: Annotated[int, Field(strict=True, ge=1, le=1000)] | None = None
    lines: Annotated[list[SyncLine], Field(min_length=1, max_length=MAX_LINES)]
    occurred_at: Occurred = Field(description="When the till took the order.")
    shift_id: uuid.UUID | None = Field(
        default=None, description="The shift it was taken in; else the till's shift at the time."
    )
    tenders: Annotated[list[OfflineTender], Field(max_length=MAX_TENDERS)] = []
    refunds: Annotated[list[OfflineRefund], Field(max_length=MAX_REFUNDS)] = []


class SyncBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    store_id: uuid.UUID
    till_id: TillId
    orders: Annotated[list[dict[str, Any]], Field(min_length=1, max_length=MAX_BATCH_ORDERS)] = (
        Field(description="Orders in the shape of SyncOrder; each is validated on its own.")
    )


class SyncProblem(BaseModel):
    type: str
    title: str
    status: int
    code: str
    detail: str | None = None
    errors: list[dict[str, str]] = []


class SyncResult(BaseModel):
    index: int = Field(description="Position of the order in the batch.")
    order_id: uuid.UUID | None
    status: Literal["created", "already_synced", "rejected"]
    order: OrderSummary | None = Field(description="What the server holds (not when rejected).")
    price_mismatches: int = Field(
        default=0, description="Lines charged at another price than the catalog's (flagged)."
    )
    problem: SyncProblem | None = None


class SyncBatchOut(BaseModel):
    batch_id: uuid.UUID
    store_id: uuid.UUID
    till_id: str
    created: int
    already_synced: int
    rejected: int
    results: list[SyncResult]


class DayHeld(BaseModel):
    business_day: date
    orders: int
    total: Money | None
    late: int


class BatchOut(BaseModel):
    batch_id: uuid.UUID
    received_at: datetime
    created: int
    already_synced: int
    rejected: int


class SyncState(BaseModel):
    store_id: uuid.UUID
    till_id: str
    last_batch: BatchOut | None
    days: list[DayHeld] = Field(description="Orders of this till the server holds, per day.")
