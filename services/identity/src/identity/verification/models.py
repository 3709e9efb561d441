"""The verification codes table (hashes only)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from contracts.envelope import utcnow
from identity.models import Base, IdMixin


class VerificationCode(IdMixin, Base):
    __tablename__ = "verification_codes"
    __table_args__ = (sa.Index(None, "phone", "purpose", "created_at"),)

    phone: Mapped[str] = mapped_column(sa.String(16))
    purpose: Mapped[str] = mapped_column(sa.String(32))
    code_hash: Mapped[str] = mapped_column(sa.String(64))
    salt: Mapped[str] = mapped_column(sa.String(32))
    created_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), default=utcnow, server_default=sa.func.now()
    )
    expires_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(default=0)
    consumed_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    burned_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
