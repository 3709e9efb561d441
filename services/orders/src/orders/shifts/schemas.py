"""Request and response models of ``/v1/shifts``."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from contracts.events.orders import TenderMethod
from contracts.money import Money
from orders.order.schemas import Occurred, TillId


def _not_negative(value: Money) -> Money:
    if value.is_negative:
        raise PydanticCustomError("negative_amount", "must not be negative")
    return value


NonNegativeMoney = Annotated[Money, AfterValidator(_not_negative)]


class ShiftOpen(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: uuid.UUID = Field(description="Client-generated: a till may open a shift offline.")
    store_id: uuid.UUID
    till_id: TillId
    opening_float: NonNegativeMoney = Field(description="Cash in the drawer at the start.")
    opened_at: Occurred | None = Field(
        default=None, description="When the till opened it; now when left out."
    )


class CountedIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: TenderMethod
    amount: NonNegativeMoney


class ShiftClose(BaseModel):
    model_config = ConfigDict(extra="forbid")

    counted: Annotated[list[CountedIn], Field(min_length=1, max_length=6)] = Field(
        description="What the cashier counted per method; cash is required."
    )
    closed_at: Occurred | None = Field(
        default=None, description="When the till closed it; now when left out."
    )


class MethodFigures(BaseModel):
    """Expected = float (cash only) + tenders - refunds taken in the shift;
    ``over_short`` = counted - expected (negative: short), null when not counted."""

    method: TenderMethod
    tenders: Money
    tender_count: int
    refunds: Money
    expected: Money
    counted: Money | None
    over_short: Money | None


class ShiftOut(BaseModel):
    id: uuid.UUID
    store_id: uuid.UUID
    till_id: str
    cashier_id: uuid.UUID | None
    business_day: date
    status: Literal["open", "closed"]
    opening_float: Money
    opened_at: datetime
    closed_at: datetime | None
    version: int


class ShiftReport(ShiftOut):
    order_count: int
    sales: Money = Field(description="Totals of the shift's orders that are not cancelled.")
    by_method: list[MethodFigures]
    over_short: Money | None = Field(description="Sum over counted methods.")
