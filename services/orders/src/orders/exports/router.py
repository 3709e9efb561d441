"""``/v1/exports``: orders with their lines, the sales report and the month's tax as CSV or
XLSX, streamed, with headers in Chinese (default) or English (``?lang=`` or
``Accept-Language``). Every export needs ``reports:read``; its checks (range, store) answer
before the file starts."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query
from fastapi.responses import StreamingResponse

from orders.exports import service
from orders.reports import service as reports
from orders.reports.router import Currency, Month
from servicekit.auth import Principal, require
from servicekit.errors import problem_responses
from servicekit.tabular import MEDIA_TYPES, Format, download, language_of
from servicekit.uow import DatabaseDep, SessionDep

router = APIRouter(prefix="/v1/exports", tags=["exports"])

ReportReader = Annotated[Principal, Depends(require("reports:read"))]
FileFormat = Annotated[Format, Query(alias="format", description="csv or xlsx")]
Lang = Annotated[str | None, Query(pattern="^(zh|en)$", description="zh or en")]
AcceptLanguage = Annotated[str | None, Header(include_in_schema=False)]

RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The file, streamed as an attachment.",
        "content": {media: {} for media in MEDIA_TYPES.values()},
    },
    **problem_responses(401, 403, 404, 422),
}


@router.get("/orders", response_class=StreamingResponse, responses=RESPONSES)
async def export_orders(
    principal: ReportReader,
    database: DatabaseDep,
    business_day_from: date,
    business_day_to: date,
    file_format: FileFormat = "csv",
    store_id: uuid.UUID | None = None,
    currency: Currency = "CNY",
    lang: Lang = None,
    accept_language: AcceptLanguage = None,
) -> StreamingResponse:
    """Every order of the range with its lines, one row per line (cancelled and unpaid
    orders included, with their status)."""
    scope = reports.Scope(
        principal,
        day_from=business_day_from,
        day_to=business_day_to,
        store_id=store_id,
        currency=currency,
    )
    return download(
        service.orders_sheets(database, scope),
        file_format=file_format,
        language=language_of(lang, accept_language),
        filename=service.export_name("orders", store_id, business_day_from, business_day_to),
    )


@router.get("/sales-report", response_class=StreamingResponse, responses=RESPONSES)
async def export_sales_report(
    principal: ReportReader,
    session: SessionDep,
    business_day_from: date,
    business_day_to: date,
    file_format: FileFormat = "csv",
    store_id: uuid.UUID | None = None,
    currency: Currency = "CNY",
    lang: Lang = None,
    accept_language: AcceptLanguage = None,
) -> StreamingResponse:
    """The sales report (``GET /v1/reports/sales``), one sheet per section."""
    report = await reports.sales_report(
        session,
        principal,
        day_from=business_day_from,
        day_to=business_day_to,
        store_id=store_id,
        currency=currency,
    )
    language = language_of(lang, accept_language)
    return download(
        service.report_sheets(report, language),
        file_format=file_format,
        language=language,
        filename=service.export_name("sales", store_id, business_day_from, business_day_to),
    )


@router.get("/tax", response_class=StreamingResponse, responses=RESPONSES)
async def export_tax(
    principal: ReportReader,
    session: SessionDep,
    month: Month,
    file_format: FileFormat = "csv",
    store_id: uuid.UUID | None = None,
    currency: Currency = "CNY",
    lang: Lang = None,
    accept_language: AcceptLanguage = None,
) -> StreamingResponse:
    """The month's sales per tax rate: by business day, then the month's total per rate."""
    year, number = (int(part) for part in month.split("-"))
    tax = await reports.tax_month(
        session, principal, year=year, month=number, store_id=store_id, currency=currency
    )
    where = str(store_id)[:8] if store_id else "all"
    return download(
        service.tax_sheets(tax),
        file_format=file_format,
        language=language_of(lang, accept_language),
        filename=f"tax-{where}-{month}",
    )
