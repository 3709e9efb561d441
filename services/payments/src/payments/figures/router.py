"""``GET /v1/payments/figures``: the payments ledger's figures for a range of business days."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from payments.figures import service
from payments.figures.schemas import PaymentFiguresOut
from servicekit.auth import Principal, require
from servicekit.errors import problem_responses
from servicekit.uow import SessionDep

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
