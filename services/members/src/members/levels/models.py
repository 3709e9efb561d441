"""Tables of member levels and the lifetime figures they are reached by."""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.orm import Mapped, mapped_column

from contracts.ids import new_id
from members.models import Base

_now = sa.func.now()


class MemberLevel(Base):
    """A level a member reaches once ``threshold`` of lifetime spend (minor units) or lifetime
    points (``basis``) is met; the highest ``rank`` met wins."""

    __tablename__ = "member_levels"

    id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), primary_key=True, default=new_id)
    merchant_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True))
    name: Mapped[str] = mapped_column(sa.Text)
    rank: Mapped[int] = mapped_column(sa.Integer)
    basis: Mapped[str] = mapped_column(sa.Text)
    threshold: Mapped[int] = mapped_column(sa.BigInteger)
    #: 10000 = 1x.
    points_multiplier_bp: Mapped[int] = mapped_column(sa.Integer, default=10_000)
    #: Priced by orders through the level name; kept here so the back office shows one place.
    discount_bp: Mapped[int] = mapped_column(sa.Integer, default=0)
    version: Mapped[int] = mapped_column(sa.Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), server_default=_now)
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), server_default=_now)

    __table_args__ = (
        sa.UniqueConstraint("merchant_id", "name", name="uq_member_levels_name"),
        sa.UniqueConstraint("merchant_id", "rank", name="uq_member_levels_rank"),
        sa.CheckConstraint("basis IN ('spend', 'points')", name="ck_member_levels_basis"),
    )


class MemberStats(Base):
    """What a member did over their lifetime, counted once per paid order."""

    __tablename__ = "member_stats"

    member_id: Mapped[uuid.UUID] = mapped_column(
        pg.UUID(as_uuid=True), sa.ForeignKey("members.id"), primary_key=True
    )
    merchant_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True))
    total_spend: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    lifetime_points: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    visit_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    last_paid_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
