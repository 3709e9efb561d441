"""HTTP endpoints of printing: a store's print jobs, one job, reprint."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query, status
from pydantic import BaseModel

from device_gateway.models import PrintJob
from device_gateway.printing import service
from device_gateway.registry.service import own_store
from servicekit.auth import Principal, PrincipalDep, require, scoped
from servicekit.errors import problem_responses
from servicekit.idempotency import Idempotency, IdempotentRoute
from servicekit.pagination import CursorParamsDep, Page, paginate
from servicekit.uow import SessionDep

router = APIRouter(tags=["printing"], route_class=IdempotentRoute)

Operator = Annotated[Principal, Depends(require("devices:operate"))]
JobState = Literal["queued", "sent", "printed", "failed"]


class PrintJobOut(BaseModel):
    id: uuid.UUID
    store_id: uuid.UUID
    source: str
    source_id: uuid.UUID
    station: str | None
    printer_type: str
    state: str
    device_id: uuid.UUID | None
    attempts: int
    last_error: str | None
    reprint_of: uuid.UUID | None
    created_at: datetime
    printed_at: datetime | None


def job_out(job: PrintJob) -> PrintJobOut:
    return PrintJobOut(
        id=job.id,
        store_id=job.store_id,
        source=job.source,
        source_id=job.source_id,
        station=job.station or None,
        printer_type=job.printer_type,
        state=job.state,
        device_id=job.device_id,
        attempts=job.attempts,
        last_error=job.last_error,
        reprint_of=job.reprint_of,
        created_at=job.created_at,
        printed_at=job.printed_at,
    )


@router.get("/v1/stores/{store_id}/print-jobs", responses=problem_responses(404))
async def store_print_jobs(
    store_id: uuid.UUID,
    principal: PrincipalDep,
    session: SessionDep,
    params: CursorParamsDep,
    state: Annotated[JobState | None, Query()] = None,
    source_id: uuid.UUID | None = None,
) -> Page[PrintJobOut]:
    """A store's print jobs, newest first."""
    await own_store(session, principal, store_id)
    stmt = scoped(sa.select(PrintJob), PrintJob, principal).where(PrintJob.store_id == store_id)
    if state is not None:
        stmt = stmt.where(PrintJob.state == state)
    if source_id is not None:
        stmt = stmt.where(PrintJob.source_id == source_id)
    return await paginate(
        session,
        stmt,
        order_by=(PrintJob.created_at, PrintJob.id),
        params=params,
        map=job_out,
        descending=True,
    )


@router.get("/v1/print-jobs/{job_id}", responses=problem_responses(404))
async def get_print_job(
    job_id: uuid.UUID, principal: PrincipalDep, session: SessionDep
) -> PrintJobOut:
    return job_out(await service.visible_job(session, principal, job_id))


@router.post(
    "/v1/print-jobs/{job_id}/reprint",
    status_code=status.HTTP_201_CREATED,
    dependencies=[Depends(Idempotency())],
    responses=problem_responses(403, 404, 409, 422),
)
async def reprint(job_id: uuid.UUID, principal: Operator, session: SessionDep) -> PrintJobOut:
    """Print a finished job again, marked as a reprint (``devices:operate``); with an
    ``Idempotency-Key`` a retried request does not print it twice."""
    return job_out(await service.reprint(session, principal, job_id))
