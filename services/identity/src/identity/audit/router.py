"""``GET /v1/audit-events``: the merchant's security log, newest first."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from identity.audit import service
from identity.audit.schemas import AuditEventOut
from identity.deps import ActorDep
from servicekit.errors import problem_responses
from servicekit.pagination import CursorParamsDep, Page
from servicekit.uow import SessionDep

router = APIRouter(tags=["audit"])


@router.get(
    "/v1/audit-events",
    response_model=Page[AuditEventOut],
    responses=problem_responses(401, 403),
    summary="Security events of the merchant (needs audit:read)",
)
async def list_audit_events(
    session: SessionDep,
    actor: ActorDep,
    params: CursorParamsDep,
    action: str | None = None,
    staff_id: uuid.UUID | None = None,
) -> Page[AuditEventOut]:
    return await service.list_events(session, actor, params, action=action, staff_id=staff_id)
