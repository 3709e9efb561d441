"""Tables of stored-value accounts, their ledger, the debits of payments and bonus rules."""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.orm import Mapped, mapped_column

from contracts.ids import new_id
from members.models import Base

_now = sa.func.now()

#: Kinds of ledger entries. ``recharge`` adds principal, ``bonus`` adds bonus (both from one
#: paid recharge), ``spend`` takes from both, ``refund`` gives a spend back, ``adjustment``
#: is a correction by staff, ``import`` the opening balance a member import carried over from
#: another system (once per member: its source is the member).
LEDGER_KINDS = ("recharge", "bonus", "spend", "refund", "adjustment", "import")


class StoredValueAccount(Base):
    """A member's stored value. The balance is ``principal + bonus``; both parts are kept
    apart because the customer paid for the principal only. Never below zero (checked by the
    database too), and always equal to the sum of the member's ledger."""

    __tablename__ = "stored_value_accounts"

    member_id: Mapped[uuid.UUID] = mapped_column(
        pg.UUID(as_uuid=True), sa.ForeignKey("members.id"), primary_key=True
    )
    merchant_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True))
    currency: Mapped[str] = mapped_column(sa.String(3))
    principal: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    bonus: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), server_default=_now)
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), server_default=_now)

    __table_args__ = (
        sa.CheckConstraint("principal >= 0", name="ck_stored_value_accounts_principal"),
        sa.CheckConstraint("bonus >= 0", name="ck_stored_value_accounts_bonus"),
        sa.Index("ix_stored_value_accounts_merchant", "merchant_id", "member_id"),
    )


class StoredValueEntry(Base):
    """One movement of an account, append-only. ``principal`` and ``bonus`` are signed
    changes; ``*_after`` what the account held after it."""

    __tablename__ = "stored_value_ledger"

    id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), primary_key=True, default=new_id)
    merchant_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True))
    member_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), sa.ForeignKey("members.id"))
    kind: Mapped[str] = mapped_column(sa.Text)
    #: What the entry answers: the payment (recharge, bonus, spend), the refund, or the
    #: adjustment's own id, the member for an import. One entry per kind and source, so a
    #: replay books nothing twice.
    source_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True))
    payment_id: Mapped[uuid.UUID | None] = mapped_column(pg.UUID(as_uuid=True))
    #: The store the money moved at, when known (not a scope: accounts are merchant-wide).
    at_store_id: Mapped[uuid.UUID | None] = mapped_column(pg.UUID(as_uuid=True))
    currency: Mapped[str] = mapped_column(sa.String(3))
    principal: Mapped[int] = mapped_column(sa.BigInteger)
    bonus: Mapped[int] = mapped_column(sa.BigInteger)
    principal_after: Mapped[int] = mapped_column(sa.BigInteger)
    bonus_after: Mapped[int] = mapped_column(sa.BigInteger)
    note: Mapped[str | None] = mapped_column(sa.Text)
    event_id: Mapped[uuid.UUID | None] = mapped_column(pg.UUID(as_uuid=True))
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), server_default=_now)

    __table_args__ = (
        sa.UniqueConstraint(
            "merchant_id", "kind", "source_id", name="uq_stored_value_ledger_source"
        ),
        sa.Index("ix_stored_value_ledger_member", "member_id", "created_at", "id"),
        sa.Index("ix_stored_value_ledger_payment", "merchant_id", "payment_id"),
        sa.CheckConstraint(
            "kind IN ('recharge', 'bonus', 'spend', 'refund', 'adjustment', 'import')",
            name="ck_stored_value_ledger_kind",
        ),
    )


class StoredValueDebit(Base):
    """The decision on one payment's debit request, taken once: ``debited`` (with what came
    from principal and bonus, and what refunds gave back so far) or ``refused``."""

    __tablename__ = "stored_value_debits"

    merchant_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), primary_key=True)
    payment_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), primary_key=True)
    member_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True))
    order_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True))
    #: stored_value or points.
    tender: Mapped[str] = mapped_column(sa.Text, default="stored_value")
    currency: Mapped[str] = mapped_column(sa.String(3))
    amount: Mapped[int] = mapped_column(sa.BigInteger)
    #: debited or refused.
    status: Mapped[str] = mapped_column(sa.Text)
    reason: Mapped[str | None] = mapped_column(sa.Text)
    principal: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    bonus: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    #: Points redeemed (``tender = points``).
    points: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    refunded_principal: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    refunded_bonus: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    refunded_points: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    #: Money refunded so far, whatever the tender.
    refunded_amount: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), server_default=_now)

    __table_args__ = (
        sa.CheckConstraint("status IN ('debited', 'refused')", name="ck_stored_value_debits"),
        sa.CheckConstraint("refunded_amount <= amount", name="ck_stored_value_debits_refunded"),
        sa.CheckConstraint(
            "tender IN ('stored_value', 'points')", name="ck_stored_value_debits_tender"
        ),
    )


class BonusRule(Base):
    """A recharge tier: a recharge of at least ``threshold`` earns ``bonus``. Only the
    highest tier a recharge reaches applies, once (not once per multiple of the threshold)."""

    __tablename__ = "stored_value_bonus_rules"

    id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), primary_key=True, default=new_id)
    merchant_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True))
    currency: Mapped[str] = mapped_column(sa.String(3))
    threshold: Mapped[int] = mapped_column(sa.BigInteger)
    bonus: Mapped[int] = mapped_column(sa.BigInteger)
    version: Mapped[int] = mapped_column(sa.Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), server_default=_now)
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), server_default=_now)

    __table_args__ = (
        sa.UniqueConstraint(
            "merchant_id", "currency", "threshold", name="uq_stored_value_bonus_rules_tier"
        ),
        sa.CheckConstraint("threshold > 0", name="ck_stored_value_bonus_rules_threshold"),
        sa.CheckConstraint("bonus >= 0", name="ck_stored_value_bonus_rules_bonus"),
    )


class PointsTenderRate(Base):
    """How many points pay one major unit (1 yuan = 100 minor units) when points are a
    tender. Absent: points do not pay."""

    __tablename__ = "points_tender_rates"

    merchant_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), primary_key=True)
    points_per_unit: Mapped[int] = mapped_column(sa.Integer)
    version: Mapped[int] = mapped_column(sa.Integer, default=1)
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), server_default=_now)

    __table_args__ = (
        sa.CheckConstraint("points_per_unit > 0", name="ck_points_tender_rates_positive"),
    )
