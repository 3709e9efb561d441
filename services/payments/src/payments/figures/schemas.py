"""Response of the daily figures endpoint."""

from __future__ import annotations

import uuid
from datetime import date

from pydantic import BaseModel, Field

from contracts.money import Money


class MethodFigures(BaseModel):
    """What one method moved, in one currency, for the orders of the range.

    ``captured`` sums the payments that took money (succeeded, even if refunded since);
    ``refunded`` the refunds that went back (succeeded); ``net`` = captured - refunded;
    ``fees`` and ``fees_refunded`` are the provider fees on them; ``settled`` = net - fees +
    fees_refunded is what reaches the merchant's account."""

    method: str
    payment_count: int
    captured: Money
    refund_count: int
    refunded: Money
    net: Money
    fees: Money
    fees_refunded: Money
    settled: Money


class CurrencyFigures(BaseModel):
    currency: str
    payment_count: int
    captured: Money
    refund_count: int
    refunded: Money
    net: Money
    fees: Money
    fees_refunded: Money
    settled: Money
    by_method: list[MethodFigures]


class PaymentFiguresOut(BaseModel):
    business_day_from: date
    business_day_to: date
    store_id: uuid.UUID | None = Field(description="Null: every store the caller may see.")
    currencies: list[CurrencyFigures]
    pending_count: int = Field(
        description="Payments still pending at their provider: not counted until settled."
    )
