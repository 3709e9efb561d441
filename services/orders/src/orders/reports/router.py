"""``/v1/reports``: the sales report of a range of business days and the month's tax."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from orders.reports import service
from orders.reports.schemas import SalesReport, TaxMonth
from servicekit.auth import Principal, require
from servicekit.errors import problem_responses
from servicekit.uow import SessionDep

router = APIRouter(prefix="/v1/reports", tags=["reports"])

ReportReader = Annotated[Principal, Depends(require("reports:read"))]
Currency = Annotated[str, Query(pattern="^[A-Z]{3}$", description="ISO 4217; default CNY.")]
Month = Annotated[str, Query(pattern=r"^[1-9]\d{3}-(0[1-9]|1[0-2])$", description="YYYY-MM")]


@router.get("/sales", responses=problem_responses(401, 403, 404, 422))
async def sales_report(
    principal: ReportReader,
    session: SessionDep,
    business_day_from: date,
    business_day_to: date,
    store_id: uuid.UUID | None = None,
    currency: Currency = "CNY",
) -> SalesReport:
    """The sales of a range of business days (inclusive, at most 366; ``reports:read``) for
    one store or every store the caller may see: 422 ``invalid_range``, 404 for a store
    outside the caller's."""
    return await service.sales_report(
        session,
        principal,
        day_from=business_day_from,
        day_to=business_day_to,
        store_id=store_id,
        currency=currency,
    )


@router.get("/tax", responses=problem_responses(401, 403, 404, 422))
async def tax_report(
    principal: ReportReader,
    session: SessionDep,
    month: Month,
    store_id: uuid.UUID | None = None,
    currency: Currency = "CNY",
) -> TaxMonth:
    """A month's sales per tax rate, per business day and in total (``reports:read``)."""
    year, number = (int(part) for part in month.split("-"))
    return await service.tax_month(
        session, principal, year=year, month=number, store_id=store_id, currency=currency
    )
