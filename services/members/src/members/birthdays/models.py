"""The birthday benefits of a merchant."""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.orm import Mapped, mapped_column

from members.models import Base

_now = sa.func.now()


class BirthdayBenefit(Base):
    """Absent: no multiplier, birthdays reckoned in Asia/Shanghai."""

    __tablename__ = "birthday_benefits"

    merchant_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), primary_key=True)
    #: 10000 = 1x, applied to points earned in the member's birthday month.
    points_multiplier_bp: Mapped[int] = mapped_column(sa.Integer, default=10_000)
    #: Where "this month" and "this year" are reckoned for birthdays.
    timezone: Mapped[str] = mapped_column(sa.Text, default="Asia/Shanghai")
    version: Mapped[int] = mapped_column(sa.Integer, default=1)
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), server_default=_now)
