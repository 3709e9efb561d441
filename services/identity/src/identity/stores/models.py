"""The stores table."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.orm import Mapped, mapped_column

from identity.models import Base, IdMixin, TimestampsMixin, VersionedMixin


class Store(IdMixin, TimestampsMixin, VersionedMixin, Base):
    __tablename__ = "stores"
    __table_args__ = (sa.UniqueConstraint("merchant_id", "code"),)

    merchant_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("merchants.id"), index=True)
    code: Mapped[str] = mapped_column(sa.String(32))
    name: Mapped[str] = mapped_column(sa.String(200))
    address: Mapped[str] = mapped_column(sa.String(500), default="")
    timezone: Mapped[str] = mapped_column(sa.String(64))
    business_hours: Mapped[list[dict[str, Any]]] = mapped_column(pg.JSONB, default=list)
    region_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("regions.id"), index=True)
    status: Mapped[str] = mapped_column(sa.String(16), default="active")
