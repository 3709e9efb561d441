"""The staff table."""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.orm import Mapped, mapped_column

from identity.models import Base, IdMixin, TimestampsMixin, VersionedMixin


class Staff(IdMixin, TimestampsMixin, VersionedMixin, Base):
    __tablename__ = "staff"
    __table_args__ = (sa.UniqueConstraint("merchant_id", "phone"),)

    merchant_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("merchants.id"), index=True)
    phone: Mapped[str] = mapped_column(sa.String(16), index=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    id_number: Mapped[str | None] = mapped_column(sa.String(32))
    password_hash: Mapped[str] = mapped_column(sa.Text)
    role: Mapped[str] = mapped_column(sa.String(32))
    scopes: Mapped[list[str]] = mapped_column(pg.ARRAY(sa.Text), default=list)
    store_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("stores.id"), index=True)
    region_ids: Mapped[list[uuid.UUID]] = mapped_column(
        pg.ARRAY(pg.UUID(as_uuid=True)), default=list
    )
    status: Mapped[str] = mapped_column(sa.String(16), default="active")
    super_admin: Mapped[bool] = mapped_column(default=False)
    # Access tokens issued before this instant are refused by identity itself (logout
    # everywhere, password reset, disabling); other services see them expire within minutes.
    sessions_valid_after: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    deactivated_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
