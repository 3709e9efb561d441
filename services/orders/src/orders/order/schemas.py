"""Request and response models of the orders API.

The request bounds keep every event an order produces (placed, paid, kitchen tickets) well
under the broker's 1 MiB message limit, even with every text field at its longest; the test
``test_largest_valid_order_events_fit_the_broker`` holds them to it."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from contracts.events.orders import Channel, TenderMethod
from contracts.money import Money

#: Lines per order; a supermarket basket of 200 distinct products is already exceptional.
MAX_LINES = 200
MAX_NOTES_LENGTH = 100
MAX_MODIFIERS = 5
MAX_MODIFIER_LENGTH = 30
MAX_TABLE_LENGTH = 32
MAX_QUANTITY = 100_000
MAX_TILL_LENGTH = 64
MAX_COUPONS = 5

# Notes, modifiers and table labels are printed on kitchen tickets and receipts: a control
# character there would reach an ESC/POS printer as a command (cut, open the cash drawer).
# A line break is allowed in notes. NUL is refused for every field by the platform.
_CONTROL = re.compile(r"[\x01-\x09\x0b-\x1f\x7f-\x9f]")


def _printable(value: str) -> str:
    if _CONTROL.search(value):
        raise PydanticCustomError(
            "control_character", "must not contain control characters (line breaks are fine)"
        )
    return value


Printable = AfterValidator(_printable)

#: The earliest moment a till may date anything: older dates are a broken clock, and far enough
#: out they would overflow the conversion to a store's local day.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)


def _not_too_early(value: datetime) -> datetime:
    if value < EARLIEST:
        raise PydanticCustomError("occurred_too_early", "must be in the year 2000 or later")
    return value


#: A moment a till reports (``occurred_at``, ``opened_at``...).
Occurred = Annotated[AwareDatetime, AfterValidator(_not_too_early)]

#: A till's own identifier (its serial number or name), printable, short.
TillId = Annotated[str, Field(min_length=1, max_length=MAX_TILL_LENGTH), Printable]

OrderStatus = Literal[
    "open", "placed", "paid", "completed", "cancelled", "partially_refunded", "refunded"
]


class LineIn(BaseModel):
    """One line: a product by id or by barcode. ``discount`` and ``unit_price`` (a price
    override) need the ``orders:discount`` permission."""

    model_config = ConfigDict(extra="forbid")

    product_id: uuid.UUID | None = None
    barcode: Annotated[str, Field(min_length=1, max_length=32)] | None = None
    quantity: Annotated[int, Strict(), Field(gt=0, le=MAX_QUANTITY)]
    notes: Annotated[str, Field(max_length=MAX_NOTES_LENGTH), Printable] | None = None
    modifiers: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=MAX_MODIFIER_LENGTH), Printable]],
        Field(max_length=MAX_MODIFIERS),
    ] = []
    discount: Money | None = Field(default=None, description="Manual discount on the line.")
    unit_price: Money | None = Field(default=None, description="Price override per unit.")

    @field_validator("discount", "unit_price")
    @classmethod
    def _not_negative(cls, value: Money | None) -> Money | None:
        if value is not None and value.is_negative:
            raise PydanticCustomError("negative_amount", "must not be negative")
        return value

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
    table: Annotated[str, Field(min_length=1, max_length=MAX_TABLE_LENGTH), Printable] | None = None
    people_count: Annotated[int, Strict(), Field(ge=1, le=1000)] | None = None
    lines: Annotated[list[LineIn], Field(min_length=1, max_length=MAX_LINES)]
    occurred_at: Occurred = Field(description="When the client took the order.")
    till_id: TillId | None = Field(
        default=None, description="The till; the order joins the till's open shift."
    )
    shift_id: uuid.UUID | None = Field(
        default=None, description="The shift the order was taken in (overrides the till's)."
    )
    coupon_ids: Annotated[list[uuid.UUID], Field(min_length=1, max_length=MAX_COUPONS)] | None = (
        Field(default=None, description="The member's coupons to redeem on this order.")
    )

    @field_validator("coupon_ids")
    @classmethod
    def _distinct_coupons(cls, value: list[uuid.UUID] | None) -> list[uuid.UUID] | None:
        if value is not None and len(set(value)) != len(value):
            raise PydanticCustomError("duplicate_coupon", "a coupon is named twice")
        return value


class CancelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Annotated[str, Field(max_length=500)] | None = None


class AdjustmentOut(BaseModel):
    """What one promotion, coupon or manual discount took off a line."""

    source: Literal["manual", "promotion", "coupon"]
    id: uuid.UUID | None = Field(description="The promotion's or coupon's id.")
    version_id: uuid.UUID | None = Field(description="The promotion version that priced it.")
    name: str
    amount: Money


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
    tax_rate_bps: int | None
    tax: Money
    catalog_unit_price: Money | None = Field(
        description="The catalog's price when the till charged another one (offline)."
    )
    price_mismatch: bool
    adjustments: list[AdjustmentOut] = Field(
        default=[], description="What each promotion, coupon or manual discount took off."
    )


class TaxOut(BaseModel):
    rate_bps: int
    tax: Money


class TenderOut(BaseModel):
    payment_id: uuid.UUID
    method: TenderMethod
    amount: Money
    recorded_at: datetime
    shift_id: uuid.UUID | None = None


class ReturnedLineOut(BaseModel):
    product_id: uuid.UUID
    quantity: int


class RefundOut(BaseModel):
    """``returned_lines`` are the goods orders accepted back (restocked by inventory);
    ``requested_returned_lines`` what the refund asked for. ``announced`` is false while the
    refund waits for its order to be paid (or for good, on a cancelled order)."""

    refund_id: uuid.UUID
    payment_id: uuid.UUID
    method: TenderMethod
    amount: Money
    returned_lines: list[ReturnedLineOut]
    requested_returned_lines: list[ReturnedLineOut]
    announced: bool
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
    number: str | None
    business_day: date
    tax_total: Money
    till_id: str | None
    shift_id: uuid.UUID | None
    cashier_id: uuid.UUID | None
    source: Literal["online", "offline"]
    synced_at: datetime | None
    late: bool = Field(description="Synced after its business day ended or its shift closed.")


class OrderOut(OrderSummary):
    lines: list[LineOut]
    tax_by_rate: list[TaxOut]
    tenders: list[TenderOut]
    refunds: list[RefundOut]
