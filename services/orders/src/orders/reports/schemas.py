"""The sales report of a range of business days."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from pydantic import BaseModel, Field

from contracts.money import Money
from orders.shifts.schemas import ShiftReport


class TaxLine(BaseModel):
    """Sales at one tax rate: ``sales`` is what the lines charged (tax included), ``tax`` the
    sum of their per-line tax, ``net_of_tax`` = sales - tax."""

    rate_bps: int
    sales: Money
    tax: Money
    net_of_tax: Money


class Margin(BaseModel):
    """Cost and margin over the lines whose unit cost was known when they were sold (frozen on
    the line); lines sold without a known cost are counted apart and left out of the margin.
    ``cost``, ``margin`` and ``margin_bps`` are null when no line had a known cost, and for a
    caller without ``catalog:manage`` (who does not see costs)."""

    cost: Money | None = Field(None, description="Cost of the known-cost lines.")
    margin: Money | None = Field(
        None, description="Revenue of the known-cost lines (tax included) minus their cost."
    )
    margin_bps: int | None = Field(
        None,
        description="margin / revenue of the known-cost lines, in basis points, rounded half "
        "away from zero; null when that revenue is zero.",
    )
    cost_unknown_quantity: int = Field(0, description="Units sold with no known cost.")
    cost_unknown_revenue: Money = Field(
        description="Revenue of the lines sold with no known cost (outside the margin)."
    )


class Summary(BaseModel):
    order_count: int
    gross: Money = Field(description="Before discounts: the lines' unit price times quantity.")
    discounts: Money
    net: Money = Field(description="What the orders charged: gross - discounts (tax included).")
    tax: Money
    tax_by_rate: list[TaxLine]
    refunds: Money = Field(description="Money returned on these orders.")
    refund_count: int
    net_after_refunds: Money
    average_ticket: Money = Field(description="net / order_count, rounded half up.")
    late_arrivals: int = Field(
        description="Orders of the range (paid or not) synced after their day or shift ended."
    )
    price_mismatches: int = Field(description="Lines a till charged at another catalog price.")
    margin: Margin = Field(description="Every sold line of the range.")


class MethodLine(BaseModel):
    """Money moved per method for the orders of the range, as the payments ledger records it
    (``GET /v1/payments/figures`` shows the same ``captured`` and ``refunded``)."""

    method: str
    tender_count: int
    captured: Money
    refund_count: int
    refunded: Money
    net: Money


class HourLine(BaseModel):
    hour: int = Field(ge=0, le=23, description="Hour of day in the store's timezone.")
    order_count: int
    net: Money


class ChannelLine(BaseModel):
    channel: str
    order_count: int
    gross: Money
    discounts: Money
    net: Money


class ProductLine(Margin):
    product_id: uuid.UUID
    name: str
    quantity: int
    revenue: Money
    tax: Money


class CashierLine(BaseModel):
    cashier_id: uuid.UUID | None
    order_count: int
    net: Money


class LateArrival(BaseModel):
    order_id: uuid.UUID
    store_id: uuid.UUID
    number: str | None
    business_day: date
    occurred_at: datetime
    synced_at: datetime | None


class SalesReport(BaseModel):
    business_day_from: date
    business_day_to: date
    store_id: uuid.UUID | None = Field(description="Null: every store the caller may see.")
    currency: str
    summary: Summary
    by_method: list[MethodLine]
    by_hour: list[HourLine]
    by_channel: list[ChannelLine]
    top_products_by_quantity: list[ProductLine]
    top_products_by_revenue: list[ProductLine]
    by_cashier: list[CashierLine]
    by_shift: list[ShiftReport]
    by_shift_truncated: bool = Field(
        description="True when the range holds more shifts than one report lists."
    )
    late_arrivals: list[LateArrival] = Field(description="At most 100, latest synced first.")
    costs_shown: bool = Field(
        description="Whether cost and margin are filled in: only for callers with "
        "catalog:manage, as in the catalog."
    )


class TaxMonthLine(BaseModel):
    business_day: date
    rate_bps: int
    sales: Money
    tax: Money
    net_of_tax: Money


class TaxMonth(BaseModel):
    """A month's sales per tax rate, per business day and in total."""

    month: str = Field(description="YYYY-MM")
    store_id: uuid.UUID | None
    currency: str
    days: list[TaxMonthLine]
    totals: list[TaxLine]
