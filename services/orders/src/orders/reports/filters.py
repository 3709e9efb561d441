"""Filters of ``GET /v1/orders`` (business day, channel, cashier, number, till and shift) and
the business-day range every report and export takes."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import Depends, Query

from contracts.events.orders import Channel
from orders.models import Order
from servicekit.errors import FieldError, ValidationFailed

#: The longest range of business days one report, list or export may cover.
MAX_DAYS = 366
MAX_NUMBER_LENGTH = 64


def check_day_range(day_from: date | None, day_to: date | None) -> None:
    """422 ``invalid_range`` for a range that ends before it starts or spans over a year."""
    if day_from is None or day_to is None:
        return
    if day_to < day_from:
        raise ValidationFailed(
            [FieldError("business_day_to", "invalid_range", "ends before business_day_from.")],
            "The range of business days ends before it starts.",
            code="invalid_range",
        )
    if (day_to - day_from).days >= MAX_DAYS:
        raise ValidationFailed(
            [FieldError("business_day_to", "invalid_range", f"at most {MAX_DAYS} days.")],
            f"A range covers at most {MAX_DAYS} business days.",
            code="invalid_range",
        )


class OrderFilters:
    """Optional query parameters of the order list; they combine. The store and status
    filters stay with the list itself."""

    def __init__(
        self,
        business_day_from: Annotated[
            date | None, Query(description="First business day (store's timezone).")
        ] = None,
        business_day_to: Annotated[date | None, Query(description="Last business day.")] = None,
        channel: Channel | None = None,
        cashier_id: uuid.UUID | None = None,
        number: Annotated[
            str | None,
            Query(min_length=1, max_length=MAX_NUMBER_LENGTH, description="Exact order number."),
        ] = None,
        till_id: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
        shift_id: uuid.UUID | None = None,
        source: Annotated[
            str | None, Query(pattern="^(online|offline)$", description="online or offline.")
        ] = None,
        late: Annotated[
            bool | None, Query(description="Only orders synced after their day or shift ended.")
        ] = None,
    ) -> None:
        self.business_day_from = business_day_from
        self.business_day_to = business_day_to
        self.channel = channel
        self.cashier_id = cashier_id
        self.number = number
        self.till_id = till_id
        self.shift_id = shift_id
        self.source = source
        self.late = late

    def apply(self, stmt: sa.Select[Any]) -> sa.Select[Any]:
        """Narrow a statement over ``Order`` already scoped to the caller."""
        check_day_range(self.business_day_from, self.business_day_to)
        if self.business_day_from is not None:
            stmt = stmt.where(Order.business_day >= self.business_day_from)
        if self.business_day_to is not None:
            stmt = stmt.where(Order.business_day <= self.business_day_to)
        if self.channel is not None:
            stmt = stmt.where(Order.channel == self.channel)
        if self.cashier_id is not None:
            stmt = stmt.where(Order.cashier_id == self.cashier_id)
        if self.number is not None:
            stmt = stmt.where(Order.number == self.number.strip())
        if self.till_id is not None:
            stmt = stmt.where(Order.till_id == self.till_id)
        if self.shift_id is not None:
            stmt = stmt.where(Order.shift_id == self.shift_id)
        if self.source is not None:
            stmt = stmt.where(Order.source == self.source)
        if self.late is not None:
            stmt = stmt.where(Order.late.is_(self.late))
        return stmt


OrderFiltersDep = Annotated[OrderFilters, Depends()]
