"""HTTP endpoints of cashier shifts: ``/v1/shifts``."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Response, status

from orders.models import Shift
from orders.shifts import service
from orders.shifts.schemas import ShiftClose, ShiftOpen, ShiftOut, ShiftReport
from servicekit.auth import Principal, PrincipalDep, require, require_store_access, scoped
from servicekit.errors import problem_responses
from servicekit.idempotency import Idempotency, IdempotentRoute
from servicekit.pagination import CursorParamsDep, Page, paginate
from servicekit.uow import SessionDep

router = APIRouter(prefix="/v1/shifts", tags=["shifts"], route_class=IdempotentRoute)

ShiftWriter = Annotated[Principal, Depends(require("orders:write"))]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    dependencies=[Depends(Idempotency(required=True))],
    responses={
        200: {"description": "This shift was opened before; here it is.", "model": ShiftOut},
        **problem_responses(403, 409, 422, 423),
    },
)
async def open_shift(
    body: ShiftOpen, principal: ShiftWriter, session: SessionDep, response: Response
) -> ShiftOut:
    """Open a shift on a till with its cash float (``orders:write``; ``Idempotency-Key``).

    One open shift per till (409 ``shift_already_open``); the same id with other contents is
    409 ``shift_id_conflict``."""
    shift, created = await service.open_shift(session, principal, body)
    if not created:
        response.status_code = status.HTTP_200_OK
    return service.shift_out(shift)


@router.post(
    "/{shift_id}/close",
    dependencies=[Depends(Idempotency())],
    responses=problem_responses(403, 404, 409, 422),
)
async def close_shift(
    shift_id: uuid.UUID, body: ShiftClose, principal: ShiftWriter, session: SessionDep
) -> ShiftReport:
    """Close the shift with the counted amounts per method (cash required); answers the shift
    report with over/short per method."""
    shift = await service.close_shift(session, principal, shift_id, body)
    return await service.report(session, shift)


@router.get("/{shift_id}", responses=problem_responses(404))
async def get_shift(
    shift_id: uuid.UUID, principal: PrincipalDep, session: SessionDep
) -> ShiftReport:
    """The shift with expected against counted per method."""
    shift = await service.get_visible(session, principal, shift_id)
    return await service.report(session, shift)


@router.get("")
async def list_shifts(
    principal: PrincipalDep,
    session: SessionDep,
    params: CursorParamsDep,
    store_id: uuid.UUID | None = None,
    till_id: str | None = None,
    business_day: date | None = None,
) -> Page[ShiftOut]:
    """Shifts the caller may see, newest first."""
    stmt = scoped(sa.select(Shift), Shift, principal)
    if store_id is not None:
        require_store_access(principal, store_id)
        stmt = stmt.where(Shift.store_id == store_id)
    if till_id is not None:
        stmt = stmt.where(Shift.till_id == till_id)
    if business_day is not None:
        stmt = stmt.where(Shift.business_day == business_day)
    return await paginate(
        session,
        stmt,
        order_by=(Shift.opened_at, Shift.id),
        params=params,
        map=service.shift_out,
        descending=True,
    )
