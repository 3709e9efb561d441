"""Tables of the members service."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from contracts.ids import new_id
from servicekit.schema import define_platform_tables


class Base(DeclarativeBase):
    metadata = sa.MetaData()


platform_tables = define_platform_tables(Base.metadata)

_now = sa.func.now()


class Member(Base):
    __tablename__ = "members"

    id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), primary_key=True, default=new_id)
    merchant_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True))
    #: E.164, unique per merchant.
    phone: Mapped[str] = mapped_column(sa.Text)
    name: Mapped[str | None] = mapped_column(sa.Text)
    birthday: Mapped[date | None] = mapped_column(sa.Date)
    tags: Mapped[list[str]] = mapped_column(pg.ARRAY(sa.Text), default=list)
    level: Mapped[str | None] = mapped_column(sa.Text)
    points_balance: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    version: Mapped[int] = mapped_column(sa.Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), server_default=_now)
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), server_default=_now)

    __table_args__ = (
        sa.UniqueConstraint("merchant_id", "phone", name="uq_members_merchant_phone"),
        sa.Index("ix_members_merchant_created", "merchant_id", "created_at", "id"),
    )


class PointsRule(Base):
    """A merchant's earning rule: ``points_per_unit`` points for every ``unit_amount`` minor
    units paid, rounded down. Absent: 1 point per 100 minor units (1 yuan)."""

    __tablename__ = "points_rules"

    merchant_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), primary_key=True)
    points_per_unit: Mapped[int] = mapped_column(sa.Integer)
    unit_amount: Mapped[int] = mapped_column(sa.BigInteger)
    version: Mapped[int] = mapped_column(sa.Integer, default=1)
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), server_default=_now)

    __table_args__ = (
        sa.CheckConstraint("points_per_unit >= 0", name="ck_points_rules_points_per_unit"),
        sa.CheckConstraint("unit_amount > 0", name="ck_points_rules_unit_amount"),
    )


class PointsEntry(Base):
    """One movement of a member's points; ``balance_after`` is the balance it left."""

    __tablename__ = "points_ledger"

    id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), primary_key=True, default=new_id)
    merchant_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True))
    member_id: Mapped[uuid.UUID] = mapped_column(
        pg.UUID(as_uuid=True), sa.ForeignKey("members.id"), index=True
    )
    #: ``None`` for an ``import`` entry.
    order_id: Mapped[uuid.UUID | None] = mapped_column(pg.UUID(as_uuid=True))
    #: ``award`` or ``reversal``; ``redemption`` (points paid for an order) or
    #: ``redemption_refund`` (their share back with a refund); ``import`` (the opening balance
    #: carried over by an import).
    kind: Mapped[str] = mapped_column(sa.Text)
    #: The refund a reversal or a redemption refund answers; the order itself for an award;
    #: the payment for a redemption; the import job for an import.
    source_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True))
    points: Mapped[int] = mapped_column(sa.BigInteger)
    balance_after: Mapped[int] = mapped_column(sa.BigInteger)
    #: What the points were computed on (the paid total, or the refunded total so far).
    base_amount: Mapped[int] = mapped_column(sa.BigInteger)
    #: ``None`` for an ``import`` entry: an opening balance was computed on no amount.
    currency: Mapped[str | None] = mapped_column(sa.String(3))
    #: The event that caused the entry; ``None`` for an ``import`` entry.
    event_id: Mapped[uuid.UUID | None] = mapped_column(pg.UUID(as_uuid=True))
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), server_default=_now)

    __table_args__ = (
        # Never twice for one order (an award) or one refund (a reversal), even if an event
        # is republished under a new id.
        sa.UniqueConstraint(
            "member_id", "order_id", "kind", "source_id", name="uq_points_ledger_source"
        ),
        sa.Index(
            "uq_points_ledger_award",
            "member_id",
            "order_id",
            unique=True,
            postgresql_where=sa.text("kind = 'award'"),
        ),
        # A member's opening balance is carried over once, whatever file or job brings it.
        sa.Index(
            "uq_points_ledger_import",
            "member_id",
            unique=True,
            postgresql_where=sa.text("kind = 'import'"),
        ),
        sa.CheckConstraint(
            "kind IN ('award', 'reversal', 'import', 'redemption', 'redemption_refund')",
            name="ck_points_ledger_kind",
        ),
    )


class PointsRefund(Base):
    """A refund of a member's order as orders reported it, kept whether or not the award is
    known yet: a refund that arrives before its order's payment still takes its points back
    once the award is made, and the largest ``refunded_total`` seen decides the reversal, so
    refunds applied in any order, or twice, end in the same balance."""

    __tablename__ = "points_refunds"

    merchant_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), primary_key=True)
    order_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), primary_key=True)
    refund_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), primary_key=True)
    member_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), sa.ForeignKey("members.id"))
    refunded_total: Mapped[int] = mapped_column(sa.BigInteger)
    order_total: Mapped[int] = mapped_column(sa.BigInteger)
    fully_refunded: Mapped[bool] = mapped_column(sa.Boolean)
    event_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True))
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), server_default=_now)

    __table_args__ = (sa.Index("ix_points_refunds_member_order", "member_id", "order_id"),)


class MemberVisit(Base):
    """One paid order of a member, as much as analysis needs of it. A refund that arrives
    first leaves a row without ``paid_at`` that the payment completes; the largest refunded
    total seen is kept, so events in any order or twice end in the same row."""

    __tablename__ = "member_visits"

    merchant_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), primary_key=True)
    order_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), primary_key=True)
    member_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True))
    store_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True))
    business_day: Mapped[date | None] = mapped_column(sa.Date)
    paid_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    total: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    currency: Mapped[str] = mapped_column(sa.String(3))
    #: ``[{"product_id": ..., "quantity": ...}]``, one per order line.
    lines: Mapped[list[dict[str, Any]]] = mapped_column(pg.JSONB, default=list)
    refunded_total: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    fully_refunded: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), server_default=_now)
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), server_default=_now)

    __table_args__ = (
        sa.Index("ix_member_visits_member_day", "merchant_id", "member_id", "business_day"),
        sa.Index("ix_member_visits_day_store", "merchant_id", "business_day", "store_id"),
    )


class MemberImport(Base):
    """An uploaded member file and how far applying it got. ``processed_rows`` moves in the
    same transaction as the chunk of rows it counts, so a crash resumes after the last
    committed chunk and never applies a row twice."""

    __tablename__ = "member_imports"

    id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), primary_key=True, default=new_id)
    merchant_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True))
    #: SHA-256 of the file: the same file uploaded again is the same job.
    file_sha256: Mapped[str] = mapped_column(sa.String(64))
    #: ``running`` or ``completed``.
    status: Mapped[str] = mapped_column(sa.Text)
    rows: Mapped[list[dict[str, str]]] = mapped_column(pg.JSONB)
    total_rows: Mapped[int] = mapped_column(sa.Integer)
    processed_rows: Mapped[int] = mapped_column(sa.Integer, default=0)
    #: Rows by result: created, updated, unchanged, rejected.
    counts: Mapped[dict[str, int]] = mapped_column(pg.JSONB, default=dict)
    created_by: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True))
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), server_default=_now)
    finished_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))

    __table_args__ = (
        sa.UniqueConstraint("merchant_id", "file_sha256", name="uq_member_imports_file"),
        sa.Index(
            "ix_member_imports_running",
            "created_at",
            postgresql_where=sa.text("status = 'running'"),
        ),
        sa.CheckConstraint("status IN ('running', 'completed')", name="ck_member_imports_status"),
    )


class MemberImportRow(Base):
    """The result of one row of an import (row numbers as a spreadsheet shows them)."""

    __tablename__ = "member_import_rows"

    import_id: Mapped[uuid.UUID] = mapped_column(
        pg.UUID(as_uuid=True), sa.ForeignKey("member_imports.id"), primary_key=True
    )
    row: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    merchant_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True))
    #: ``created``, ``updated``, ``unchanged`` or ``rejected``.
    status: Mapped[str] = mapped_column(sa.Text)
    phone: Mapped[str | None] = mapped_column(sa.Text)
    member_id: Mapped[uuid.UUID | None] = mapped_column(pg.UUID(as_uuid=True))
    #: What a rejected row must fix, as a stable code.
    code: Mapped[str | None] = mapped_column(sa.Text)
    detail: Mapped[str | None] = mapped_column(sa.Text)
    #: The fields an ``updated`` row changed.
    changed: Mapped[list[str]] = mapped_column(pg.ARRAY(sa.Text), default=list)
