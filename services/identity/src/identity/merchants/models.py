"""The merchants table."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from identity.models import Base, IdMixin, TimestampsMixin, VersionedMixin


class Merchant(IdMixin, TimestampsMixin, VersionedMixin, Base):
    __tablename__ = "merchants"

    code: Mapped[str] = mapped_column(sa.String(16), unique=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    credit_code: Mapped[str] = mapped_column(sa.String(18), unique=True)
    legal_rep_name: Mapped[str] = mapped_column(sa.String(100))
    legal_rep_id_number: Mapped[str] = mapped_column(sa.String(32))
    contact_phone: Mapped[str] = mapped_column(sa.String(16))
    industry: Mapped[str] = mapped_column(sa.String(32))
    status: Mapped[str] = mapped_column(sa.String(16), default="active")
