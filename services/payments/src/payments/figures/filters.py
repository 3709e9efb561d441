"""Filters of ``GET /v1/payments``: by order, store, method, status and the order's business
day, so a back office can list a day's payments without knowing an order id."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import Depends, Query

from payments.models import OrderReplica, Payment
from payments.payment.schemas import PaymentMethod, PaymentPurpose, PaymentStatus
from servicekit.auth import Principal, require_store_access
from servicekit.errors import FieldError, ValidationFailed

#: The longest range of business days one request may cover.
MAX_DAYS = 366


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


def in_business_days(day_from: date | None, day_to: date | None) -> sa.ColumnElement[bool]:
    """Payments whose order's business day lies in the range (either end may be open)."""
    condition: list[sa.ColumnElement[bool]] = [
        OrderReplica.merchant_id == Payment.merchant_id,
        OrderReplica.order_id == Payment.order_id,
    ]
    if day_from is not None:
        condition.append(OrderReplica.business_day >= day_from)
    if day_to is not None:
        condition.append(OrderReplica.business_day <= day_to)
    return sa.exists().where(*condition)


class PaymentFilters:
    """The query parameters of the payment list."""

    def __init__(
        self,
        order_id: uuid.UUID | None = None,
        store_id: uuid.UUID | None = None,
        purpose: Annotated[
            PaymentPurpose | None,
            Query(description="``order`` (sales) or ``stored_value_recharge``."),
        ] = None,
        member_id: uuid.UUID | None = None,
        method: PaymentMethod | None = None,
        payment_status: Annotated[PaymentStatus | None, Query(alias="status")] = None,
        business_day_from: Annotated[
            date | None, Query(description="First business day of the payment's order.")
        ] = None,
        business_day_to: Annotated[
            date | None, Query(description="Last business day of the payment's order.")
        ] = None,
    ) -> None:
        self.order_id = order_id
        self.store_id = store_id
        self.purpose = purpose
        self.member_id = member_id
        self.method = method
        self.status = payment_status
        self.business_day_from = business_day_from
        self.business_day_to = business_day_to

    def apply(self, stmt: sa.Select[Any], principal: Principal) -> sa.Select[Any]:
        """Narrow an already scoped statement over ``Payment``."""
        check_day_range(self.business_day_from, self.business_day_to)
        if self.store_id is not None:
            require_store_access(principal, self.store_id)
            stmt = stmt.where(Payment.store_id == self.store_id)
        if self.order_id is not None:
            stmt = stmt.where(Payment.order_id == self.order_id)
        if self.purpose is not None:
            stmt = stmt.where(Payment.purpose == self.purpose)
        if self.member_id is not None:
            stmt = stmt.where(Payment.member_id == self.member_id)
        if self.method is not None:
            stmt = stmt.where(Payment.method == self.method)
        if self.status is not None:
            stmt = stmt.where(Payment.status == self.status)
        if self.business_day_from is not None or self.business_day_to is not None:
            stmt = stmt.where(in_business_days(self.business_day_from, self.business_day_to))
        return stmt


PaymentFiltersDep = Annotated[PaymentFilters, Depends()]
