"""Tables of the payments service.

Amounts are integer minor units in ``*_amount`` columns next to the order's ``currency``.
"""

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


#: How far an order has gone: a replica row only ever moves to a higher rank, so a late,
#: repeated or replayed event can never take it back (``paid`` never reopens, a ``cancelled``
#: tombstone stays cancelled).
STATE_RANK: dict[str, int] = {"open": 1, "paid": 2, "cancelled": 3}


class OrderReplica(Base):
    """What payments knows of an order, fed by the orders events (or read through from orders
    when a payment outruns them), so that a payment can be accepted while orders is down.

    Keyed by (merchant, order): order ids are chosen by clients and unique per merchant only.
    A ``cancelled`` that arrives before its ``placed`` leaves a tombstone without amounts."""

    __tablename__ = "order_replicas"
    __table_args__ = (
        sa.Index("ix_order_replicas_business_day", "merchant_id", "business_day", "store_id"),
    )

    merchant_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), primary_key=True)
    order_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), primary_key=True)
    store_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True))
    member_id: Mapped[uuid.UUID | None] = mapped_column(pg.UUID(as_uuid=True))
    total_amount: Mapped[int | None] = mapped_column(sa.BigInteger)
    currency: Mapped[str | None] = mapped_column(sa.String(3))
    #: open, paid or cancelled.
    state: Mapped[str] = mapped_column(sa.Text)
    #: :data:`STATE_RANK` of ``state``.
    state_rank: Mapped[int] = mapped_column(sa.SmallInteger)
    #: The order's lines as ``[{"product_id": ..., "quantity": ...}]``: what may come back.
    lines: Mapped[list[dict[str, Any]] | None] = mapped_column(pg.JSONB)
    #: The order's business day in its store's timezone, as orders decided it: payments and
    #: refunds count in their order's day, so the day's figures match the sales report.
    business_day: Mapped[date | None] = mapped_column(sa.Date)
    updated_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=_now, onupdate=_now
    )


class MerchantSettlementConfig(Base):
    """A merchant's fee rate; absent means the service default."""

    __tablename__ = "merchant_settlement_configs"

    merchant_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), primary_key=True)
    fee_rate_bps: Mapped[int] = mapped_column(sa.Integer)
    version: Mapped[int] = mapped_column(sa.Integer, default=1)
    updated_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=_now, onupdate=_now
    )

    __table_args__ = (
        sa.CheckConstraint("fee_rate_bps BETWEEN 0 AND 10000", name="ck_fee_rate_bps"),
    )


class SettlementAccount(Base):
    """The merchant's own account that its payments settle to (direct settlement)."""

    __tablename__ = "settlement_accounts"

    id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), primary_key=True, default=new_id)
    merchant_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True))
    #: ``bank`` (a bank account) or ``provider`` (a provider merchant number).
    kind: Mapped[str] = mapped_column(sa.Text)
    #: Bank name or provider name.
    institution: Mapped[str] = mapped_column(sa.Text)
    account_number: Mapped[str] = mapped_column(sa.Text)
    holder_name: Mapped[str] = mapped_column(sa.Text)
    active: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), server_default=_now)
    deactivated_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))

    __table_args__ = (
        # One account in force per merchant: every payment knows where it settles.
        sa.Index(
            "uq_settlement_accounts_active",
            "merchant_id",
            unique=True,
            postgresql_where=sa.text("active"),
        ),
    )


class Payment(Base):
    __tablename__ = "payments"

    id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), primary_key=True, default=new_id)
    merchant_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True))
    store_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True))
    #: The order paid; none for a stored-value recharge, which is not a sale.
    order_id: Mapped[uuid.UUID | None] = mapped_column(pg.UUID(as_uuid=True))
    #: ``order`` (a sale) or ``stored_value_recharge`` (money onto a member's account).
    purpose: Mapped[str] = mapped_column(sa.Text, default="order")
    #: The member recharged, or whose stored value pays.
    member_id: Mapped[uuid.UUID | None] = mapped_column(pg.UUID(as_uuid=True))
    method: Mapped[str] = mapped_column(sa.Text)
    #: The provider adapter, ``cash``, or ``members`` for stored value (members debits it).
    provider: Mapped[str] = mapped_column(sa.Text)
    #: pending, succeeded, failed, partially_refunded, refunded.
    status: Mapped[str] = mapped_column(sa.Text)
    currency: Mapped[str] = mapped_column(sa.String(3))
    amount: Mapped[int] = mapped_column(sa.BigInteger)
    tendered_amount: Mapped[int | None] = mapped_column(sa.BigInteger)
    change_amount: Mapped[int | None] = mapped_column(sa.BigInteger)
    fee_rate_bps: Mapped[int] = mapped_column(sa.Integer)
    fee_amount: Mapped[int] = mapped_column(sa.BigInteger)
    refunded_amount: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    fee_refunded_amount: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    settlement_account_id: Mapped[uuid.UUID | None] = mapped_column(
        pg.UUID(as_uuid=True), sa.ForeignKey("settlement_accounts.id")
    )
    provider_reference: Mapped[str | None] = mapped_column(sa.Text)
    qr_code: Mapped[str | None] = mapped_column(sa.Text)
    failure_reason: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), server_default=_now)
    completed_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))

    __table_args__ = (
        sa.Index("ix_payments_order", "merchant_id", "order_id", "created_at", "id"),
        sa.Index("ix_payments_listing", "merchant_id", "created_at", "id"),
        sa.Index(
            "ix_payments_pending", "created_at", postgresql_where=sa.text("status = 'pending'")
        ),
        sa.CheckConstraint("amount > 0", name="ck_payments_amount_positive"),
        sa.CheckConstraint(
            "refunded_amount BETWEEN 0 AND amount", name="ck_payments_refunded_within_amount"
        ),
        sa.CheckConstraint(
            "(purpose = 'order' AND order_id IS NOT NULL) OR (purpose = "
            "'stored_value_recharge' AND order_id IS NULL AND member_id IS NOT NULL)",
            name="ck_payments_purpose",
        ),
        sa.Index(
            "ix_payments_member",
            "merchant_id",
            "member_id",
            "created_at",
            postgresql_where=sa.text("member_id IS NOT NULL"),
        ),
    )


class Refund(Base):
    """Money going back. Its id is the provider's idempotency key: it comes from the client or
    is derived from the Idempotency-Key, so a retried request maps onto the same row."""

    __tablename__ = "refunds"

    id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), primary_key=True, default=new_id)
    payment_id: Mapped[uuid.UUID] = mapped_column(
        pg.UUID(as_uuid=True), sa.ForeignKey("payments.id"), index=True
    )
    merchant_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True))
    store_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True))
    #: None for the refund of a recharge.
    order_id: Mapped[uuid.UUID | None] = mapped_column(pg.UUID(as_uuid=True))
    currency: Mapped[str] = mapped_column(sa.String(3))
    amount: Mapped[int] = mapped_column(sa.BigInteger)
    fee_refunded_amount: Mapped[int] = mapped_column(sa.BigInteger)
    #: pending (the provider is being asked), succeeded or failed.
    status: Mapped[str] = mapped_column(sa.Text)
    provider_reference: Mapped[str | None] = mapped_column(sa.Text)
    reason: Mapped[str | None] = mapped_column(sa.Text)
    failure_reason: Mapped[str | None] = mapped_column(sa.Text)
    returned_lines: Mapped[list[dict[str, Any]]] = mapped_column(pg.JSONB, default=list)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), server_default=_now)

    __table_args__ = (
        sa.CheckConstraint("amount > 0", name="ck_refunds_amount_positive"),
        sa.Index("ix_refunds_order", "merchant_id", "order_id"),
        sa.Index(
            "ix_refunds_pending", "created_at", postgresql_where=sa.text("status = 'pending'")
        ),
    )


class ProviderNotification(Base):
    """Every verified provider notification, once: a duplicate finds its row."""

    __tablename__ = "provider_notifications"

    provider: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    notification_id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    payment_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True))
    status: Mapped[str] = mapped_column(sa.Text)
    body: Mapped[dict[str, Any]] = mapped_column(pg.JSONB)
    received_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), server_default=_now)
