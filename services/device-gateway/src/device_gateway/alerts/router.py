"""HTTP endpoints of device alerts: ``/v1/stores/{store_id}/alerts``."""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from fastapi import APIRouter
from pydantic import BaseModel

from device_gateway.models import DeviceAlert
from device_gateway.registry.service import own_store
from servicekit.auth import PrincipalDep, scoped
from servicekit.errors import problem_responses
from servicekit.pagination import CursorParamsDep, Page, paginate
from servicekit.uow import SessionDep

router = APIRouter(tags=["alerts"])


class AlertOut(BaseModel):
    id: uuid.UUID
    store_id: uuid.UUID
    device_id: uuid.UUID | None
    print_job_id: uuid.UUID | None
    kind: str
    detail: str
    raised_at: datetime
    resolved_at: datetime | None


def alert_out(alert: DeviceAlert) -> AlertOut:
    return AlertOut(
        id=alert.id,
        store_id=alert.store_id,
        device_id=alert.device_id,
        print_job_id=alert.print_job_id,
        kind=alert.kind,
        detail=alert.detail,
        raised_at=alert.raised_at,
        resolved_at=alert.resolved_at,
    )


@router.get("/v1/stores/{store_id}/alerts", responses=problem_responses(404))
async def store_alerts(
    store_id: uuid.UUID,
    principal: PrincipalDep,
    session: SessionDep,
    params: CursorParamsDep,
    open: bool = True,
) -> Page[AlertOut]:
    """A store's device alerts, newest first; ``open=false`` includes resolved ones."""
    await own_store(session, principal, store_id)
    stmt = scoped(sa.select(DeviceAlert), DeviceAlert, principal).where(
        DeviceAlert.store_id == store_id
    )
    if open:
        stmt = stmt.where(DeviceAlert.resolved_at.is_(None))
    return await paginate(
        session,
        stmt,
        order_by=(DeviceAlert.raised_at, DeviceAlert.id),
        params=params,
        map=alert_out,
        descending=True,
    )
