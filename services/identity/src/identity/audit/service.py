"""Recording and reading security events (sign-ins, lockouts, role changes, handovers)."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from identity.audit.models import AuditEvent
from identity.audit.schemas import AuditEventOut
from identity.deps import Actor
from servicekit.pagination import CursorParams, Page, paginate


async def record(
    session: AsyncSession,
    *,
    merchant_id: uuid.UUID,
    action: str,
    staff_id: uuid.UUID | None = None,
    actor_id: uuid.UUID | None = None,
    detail: dict[str, Any] | None = None,
    ip: str | None = None,
) -> None:
    """Append an audit event in the caller's transaction."""
    session.add(
        AuditEvent(
            merchant_id=merchant_id,
            action=action,
            staff_id=staff_id,
            actor_id=actor_id,
            detail=detail or {},
            ip=ip,
        )
    )


async def list_events(
    session: AsyncSession,
    actor: Actor,
    params: CursorParams,
    *,
    action: str | None = None,
    staff_id: uuid.UUID | None = None,
) -> Page[AuditEventOut]:
    actor.require("audit:read")
    stmt = sa.select(AuditEvent).where(AuditEvent.merchant_id == actor.merchant_id)
    if action is not None:
        stmt = stmt.where(AuditEvent.action == action)
    if staff_id is not None:
        stmt = stmt.where(AuditEvent.staff_id == staff_id)
    return await paginate(
        session,
        stmt,
        order_by=(AuditEvent.created_at, AuditEvent.id),
        params=params,
        map=AuditEventOut.model_validate,
        descending=True,
    )
