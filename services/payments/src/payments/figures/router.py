"""``GET /v1/payments/figures`` (the ledger's figures for a range of business days) and
``GET /v1/payments/export`` (payments and refunds as CSV or XLSX)."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Header, Query
from fastapi.responses import StreamingResponse

from payments.figures import export, service
from payments.figures.filters import PaymentFiltersDep
from payments.figures.schemas import PaymentFiguresOut
from payments.models import Payment
from servicekit.auth import Principal, require, scoped
from servicekit.errors import problem_responses
from servicekit.tabular import MEDIA_TYPES, Format, download, language_of
from servicekit.uow import DatabaseDep, SessionDep

router = APIRouter(tags=["payments"])

ReportReader = Annotated[Principal, Depends(require("reports:read"))]


@router.get(
    "/v1/payments/figures",
    responses=problem_responses(401, 403, 404, 422),
    summary="What each method captured, refunded and settled over a range of business days",
)
async def payment_figures(
    session: SessionDep,
    principal: ReportReader,
    business_day_from: Annotated[date, Query()],
    business_day_to: Annotated[date, Query()],
    store_id: uuid.UUID | None = None,
) -> PaymentFiguresOut:
    """Payments and refunds count in the business day of their order (``reports:read``).

    The range is inclusive and at most 366 days (422 ``invalid_range``); a store outside the
    caller's is 404."""
    return await service.daily_figures(
        session, principal, day_from=business_day_from, day_to=business_day_to, store_id=store_id
    )


@router.get(
    "/v1/payments/export",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The file, streamed as an attachment.",
            "content": {media: {} for media in MEDIA_TYPES.values()},
        },
        **problem_responses(401, 403, 404, 422),
    },
    summary="Payments and their refunds as CSV or XLSX",
)
async def export_payments(
    principal: ReportReader,
    database: DatabaseDep,
    filters: PaymentFiltersDep,
    file_format: Annotated[Format, Query(alias="format", description="csv or xlsx")] = "csv",
    lang: Annotated[str | None, Query(pattern="^(zh|en)$")] = None,
    accept_language: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> StreamingResponse:
    """The payments the same filters as ``GET /v1/payments`` select, and their refunds
    (``reports:read``); headers in Chinese unless ``lang=en`` or ``Accept-Language`` asks
    for English."""
    payments = filters.apply(scoped(sa.select(Payment.id), Payment, principal), principal)
    first, last = filters.business_day_from, filters.business_day_to
    span = "-".join(f"{day:%Y%m%d}" for day in (first, last) if day is not None) or "all"
    return download(
        export.ledger_sheets(database, payments),
        file_format=file_format,
        language=language_of(lang, accept_language),
        filename=f"payments-{span}",
    )
