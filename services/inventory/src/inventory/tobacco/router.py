"""HTTP endpoints of the tobacco reports: ``/v1/stores/{store_id}/tobacco/daily-report``
and ``/v1/tobacco/compliance-log``."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from pydantic import AwareDatetime

from inventory.stores.service import require_store
from inventory.tobacco import service
from inventory.tobacco.service import TobaccoDayReport
from servicekit.auth import Principal, require
from servicekit.errors import FieldError, ValidationFailed, problem_responses
from servicekit.uow import SessionDep

router = APIRouter(tags=["tobacco"])

ReportReader = Annotated[Principal, Depends(require("reports:read"))]
MAX_LOG_SPAN = timedelta(days=366)


@router.get("/v1/stores/{store_id}/tobacco/daily-report", responses=problem_responses(403, 404))
async def tobacco_daily_report(
    store_id: uuid.UUID,
    principal: ReportReader,
    session: SessionDep,
    day: Annotated[date, Query(alias="date", description="The store's business day.")],
) -> TobaccoDayReport:
    """Each tobacco product's opening stock, purchases, sales, returns, transfers and closing
    stock for one day of the store (``reports:read``)."""
    await require_store(session, principal, store_id)
    if not service.EARLIEST.date() <= day <= service.LATEST.date():
        raise ValidationFailed([FieldError("date", "out_of_range", "not a business day we keep.")])
    return await service.daily_report(session, principal, store_id, day)


@router.get(
    "/v1/tobacco/compliance-log",
    responses={
        200: {"content": {"text/csv": {}}, "description": "CSV, one movement a line."},
        **problem_responses(403, 404, 422),
    },
)
async def tobacco_compliance_log(
    principal: ReportReader,
    session: SessionDep,
    since: Annotated[AwareDatetime, Query(alias="from")],
    until: Annotated[AwareDatetime, Query(alias="to")],
    store_id: uuid.UUID | None = None,
) -> Response:
    """Every tobacco purchase (with the supplier's licence), sale, return and transfer in the
    caller's stores, as CSV for an inspector (``reports:read``; at most 366 days)."""
    if not service.EARLIEST <= since < until <= service.LATEST or until - since > MAX_LOG_SPAN:
        raise ValidationFailed(
            [FieldError("to", "invalid_range", "must be after from, within 366 days.")]
        )
    if store_id is not None:
        await require_store(session, principal, store_id)
    body = await service.compliance_log(session, principal, since, until, store_id)
    return Response(
        content=body,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="tobacco-compliance-log.csv"'},
    )
