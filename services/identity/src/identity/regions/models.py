"""The regions table."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from identity.models import Base, IdMixin, TimestampsMixin, VersionedMixin


class Region(IdMixin, TimestampsMixin, VersionedMixin, Base):
    __tablename__ = "regions"
    __table_args__ = (sa.UniqueConstraint("merchant_id", "name"),)

    merchant_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("merchants.id"), index=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    status: Mapped[str] = mapped_column(sa.String(16), default="active")
