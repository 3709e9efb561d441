"""Tables of member tags: where each tag of a member comes from, and the tag rules."""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.orm import Mapped, mapped_column

from contracts.ids import new_id
from members.models import Base

_now = sa.func.now()


class MemberTag(Base):
    """One tag of a member from one source (``manual`` or ``rule``); the member's ``tags``
    column is the union, kept as the read model."""

    __tablename__ = "member_tags"

    member_id: Mapped[uuid.UUID] = mapped_column(
        pg.UUID(as_uuid=True), sa.ForeignKey("members.id"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    source: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    merchant_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True))
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), server_default=_now)

    __table_args__ = (
        sa.CheckConstraint("source IN ('manual', 'rule')", name="ck_member_tags_source"),
        sa.Index("ix_member_tags_merchant_tag", "merchant_id", "tag"),
    )


class TagRule(Base):
    """``tag`` belongs to every member meeting all the conditions given (absent ones are not
    checked)."""

    __tablename__ = "tag_rules"

    id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), primary_key=True, default=new_id)
    merchant_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True))
    tag: Mapped[str] = mapped_column(sa.Text)
    levels: Mapped[list[str] | None] = mapped_column(pg.ARRAY(sa.Text))
    min_points_balance: Mapped[int | None] = mapped_column(sa.BigInteger)
    min_total_spend: Mapped[int | None] = mapped_column(sa.BigInteger)
    min_visit_count: Mapped[int | None] = mapped_column(sa.Integer)
    birthday_month: Mapped[int | None] = mapped_column(sa.Integer)
    #: Names of :data:`members.analysis.rfm.SEGMENTS`; the member's segment is one of them.
    rfm_segments: Mapped[list[str] | None] = mapped_column(pg.ARRAY(sa.Text))
    active: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    version: Mapped[int] = mapped_column(sa.Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), server_default=_now)
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), server_default=_now)

    __table_args__ = (sa.UniqueConstraint("merchant_id", "tag", name="uq_tag_rules_tag"),)
