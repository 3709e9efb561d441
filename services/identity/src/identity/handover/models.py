"""The handovers table: who hands the super admin role to whom, and how far it got."""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from contracts.envelope import utcnow
from identity.models import Base, IdMixin


class Handover(IdMixin, Base):
    __tablename__ = "handovers"
    __table_args__ = (
        # At most one handover under way per merchant, whatever the timing of two requests.
        sa.Index(
            "uq_handovers_one_open_per_merchant",
            "merchant_id",
            unique=True,
            postgresql_where=sa.text("status IN ('pending', 'accepted')"),
        ),
    )

    merchant_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("merchants.id"), index=True)
    from_staff_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("staff.id"))
    phone: Mapped[str] = mapped_column(sa.String(16))
    name: Mapped[str] = mapped_column(sa.String(100))
    to_staff_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("staff.id"))
    # pending -> accepted (the new admin verified their phone) -> completed (the old admin
    # stepped down); pending or accepted -> cancelled.
    status: Mapped[str] = mapped_column(sa.String(16), default="pending")
    outgoing_action: Mapped[str | None] = mapped_column(sa.String(16))
    created_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), default=utcnow, server_default=sa.func.now()
    )
    accepted_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
