"""The audit events table: append-only."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.orm import Mapped, mapped_column

from contracts.envelope import utcnow
from identity.models import Base, IdMixin


class AuditEvent(IdMixin, Base):
    __tablename__ = "audit_events"
    __table_args__ = (sa.Index(None, "merchant_id", "created_at", "id"),)

    merchant_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("merchants.id"))
    action: Mapped[str] = mapped_column(sa.String(64))
    # The account the event is about, and who caused it (absent: the account itself).
    staff_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("staff.id"))
    actor_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("staff.id"))
    detail: Mapped[dict[str, Any]] = mapped_column(pg.JSONB, default=dict)
    ip: Mapped[str | None] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), default=utcnow, server_default=sa.func.clock_timestamp()
    )
