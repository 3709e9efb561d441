"""Tables of coupon templates and the coupons issued from them."""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.orm import Mapped, mapped_column

from contracts.ids import new_id
from members.models import Base

_now = sa.func.now()


class CouponTemplate(Base):
    """What a coupon gives and when it is valid. The terms are fixed once created (a coupon
    keeps the terms it was issued with); name, limits, flags and ``active`` may change."""

    __tablename__ = "coupon_templates"

    id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), primary_key=True, default=new_id)
    merchant_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True))
    name: Mapped[str] = mapped_column(sa.Text)
    kind: Mapped[str] = mapped_column(sa.Text)
    currency: Mapped[str] = mapped_column(sa.String(3))
    threshold: Mapped[int | None] = mapped_column(sa.BigInteger)
    amount_off: Mapped[int | None] = mapped_column(sa.BigInteger)
    percent_off_bp: Mapped[int | None] = mapped_column(sa.Integer)
    cap: Mapped[int | None] = mapped_column(sa.BigInteger)
    product_ids: Mapped[list[uuid.UUID]] = mapped_column(pg.ARRAY(pg.UUID(as_uuid=True)))
    #: ``None``: every store of the merchant.
    store_ids: Mapped[list[uuid.UUID] | None] = mapped_column(pg.ARRAY(pg.UUID(as_uuid=True)))
    valid_from: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    valid_until: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    valid_days: Mapped[int | None] = mapped_column(sa.Integer)
    per_member_limit: Mapped[int | None] = mapped_column(sa.Integer)
    issue_on_signup: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    issue_on_birthday: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    active: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    version: Mapped[int] = mapped_column(sa.Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), server_default=_now)
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), server_default=_now)

    __table_args__ = (
        sa.Index("ix_coupon_templates_merchant_created", "merchant_id", "created_at", "id"),
        sa.CheckConstraint(
            "kind IN ('full_reduction', 'percentage', 'no_threshold', 'product')",
            name="ck_coupon_templates_kind",
        ),
    )


class Coupon(Base):
    """A coupon of one member, with the terms of its template at issue.

    ``sequence`` is the highest redemption step orders announced for it: a step with a lower
    or equal one arriving late changes nothing. ``source_key`` makes an automatic issue
    happen once: ``signup``, the year for a birthday, the batch key for a bulk issue.
    """

    __tablename__ = "coupons"

    id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), primary_key=True, default=new_id)
    merchant_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True))
    template_id: Mapped[uuid.UUID] = mapped_column(
        pg.UUID(as_uuid=True), sa.ForeignKey("coupon_templates.id")
    )
    member_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), sa.ForeignKey("members.id"))
    code: Mapped[str] = mapped_column(sa.Text)
    #: ``issued``, ``reserved``, ``redeemed`` or ``voided``.
    state: Mapped[str] = mapped_column(sa.Text, default="issued")
    kind: Mapped[str] = mapped_column(sa.Text)
    currency: Mapped[str] = mapped_column(sa.String(3))
    threshold: Mapped[int | None] = mapped_column(sa.BigInteger)
    amount_off: Mapped[int | None] = mapped_column(sa.BigInteger)
    percent_off_bp: Mapped[int | None] = mapped_column(sa.Integer)
    cap: Mapped[int | None] = mapped_column(sa.BigInteger)
    product_ids: Mapped[list[uuid.UUID]] = mapped_column(pg.ARRAY(pg.UUID(as_uuid=True)))
    store_ids: Mapped[list[uuid.UUID] | None] = mapped_column(pg.ARRAY(pg.UUID(as_uuid=True)))
    valid_from: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    valid_until: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    #: ``manual``, ``bulk``, ``signup`` or ``birthday``.
    source: Mapped[str] = mapped_column(sa.Text)
    source_key: Mapped[str | None] = mapped_column(sa.Text)
    sequence: Mapped[int] = mapped_column(sa.Integer, default=0)
    #: Kind of the step ``sequence`` came with (``reserved``, ``redeemed``, ``released``);
    #: ``None`` before any, or for a coupon stepped before it was recorded.
    last_step: Mapped[str | None] = mapped_column(sa.Text)
    order_id: Mapped[uuid.UUID | None] = mapped_column(pg.UUID(as_uuid=True))
    discount: Mapped[int | None] = mapped_column(sa.BigInteger)
    void_reason: Mapped[str | None] = mapped_column(sa.Text)
    issued_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), server_default=_now)
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), server_default=_now)

    __table_args__ = (
        sa.UniqueConstraint("merchant_id", "code", name="uq_coupons_code"),
        sa.Index(
            "uq_coupons_source",
            "template_id",
            "member_id",
            "source",
            "source_key",
            unique=True,
            postgresql_where=sa.text("source_key IS NOT NULL"),
        ),
        sa.Index("ix_coupons_member_issued", "member_id", "issued_at", "id"),
        sa.CheckConstraint(
            "state IN ('issued', 'reserved', 'redeemed', 'voided')", name="ck_coupons_state"
        ),
        sa.CheckConstraint(
            "last_step IN ('reserved', 'redeemed', 'released')", name="ck_coupons_last_step"
        ),
    )
