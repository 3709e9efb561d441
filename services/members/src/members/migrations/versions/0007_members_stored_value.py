"""Stored value: accounts (principal and bonus), their append-only ledger, the decision on
each payment's debit, recharge bonus tiers; points as a tender (a rate per merchant, and
redemptions in the points ledger).

Revision ID: 0007_members_stored_value
Revises: 0006_coupons_tags_levels
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_members_stored_value"
down_revision: str | None = "0006_coupons_tags_levels"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

POINTS_KINDS = "('award', 'reversal', 'import', 'redemption', 'redemption_refund')"


def _now() -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(
        "created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
    )


def upgrade() -> None:
    op.create_table(
        "stored_value_accounts",
        sa.Column("member_id", sa.UUID(), sa.ForeignKey("members.id"), primary_key=True),
        sa.Column("merchant_id", sa.UUID(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("principal", sa.BigInteger(), nullable=False),
        sa.Column("bonus", sa.BigInteger(), nullable=False),
        _now(),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("principal >= 0", name="ck_stored_value_accounts_principal"),
        sa.CheckConstraint("bonus >= 0", name="ck_stored_value_accounts_bonus"),
    )
    op.create_index(
        "ix_stored_value_accounts_merchant", "stored_value_accounts", ["merchant_id", "member_id"]
    )
    op.create_table(
        "stored_value_ledger",
        sa.Column("id", sa.UUID(), primary_key=True),
        sa.Column("merchant_id", sa.UUID(), nullable=False),
        sa.Column("member_id", sa.UUID(), sa.ForeignKey("members.id"), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("source_id", sa.UUID(), nullable=False),
        sa.Column("payment_id", sa.UUID(), nullable=True),
        sa.Column("at_store_id", sa.UUID(), nullable=True),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("principal", sa.BigInteger(), nullable=False),
        sa.Column("bonus", sa.BigInteger(), nullable=False),
        sa.Column("principal_after", sa.BigInteger(), nullable=False),
        sa.Column("bonus_after", sa.BigInteger(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("event_id", sa.UUID(), nullable=True),
        _now(),
        sa.UniqueConstraint(
            "merchant_id", "kind", "source_id", name="uq_stored_value_ledger_source"
        ),
        sa.CheckConstraint(
            "kind IN ('recharge', 'bonus', 'spend', 'refund', 'adjustment')",
            name="ck_stored_value_ledger_kind",
        ),
    )
    op.create_index(
        "ix_stored_value_ledger_member", "stored_value_ledger", ["member_id", "created_at", "id"]
    )
    op.create_index(
        "ix_stored_value_ledger_payment", "stored_value_ledger", ["merchant_id", "payment_id"]
    )
    op.create_table(
        "stored_value_debits",
        sa.Column("merchant_id", sa.UUID(), nullable=False),
        sa.Column("payment_id", sa.UUID(), nullable=False),
        sa.Column("member_id", sa.UUID(), nullable=False),
        sa.Column("order_id", sa.UUID(), nullable=False),
        sa.Column("tender", sa.Text(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("principal", sa.BigInteger(), nullable=False),
        sa.Column("bonus", sa.BigInteger(), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("refunded_principal", sa.BigInteger(), nullable=False),
        sa.Column("refunded_bonus", sa.BigInteger(), nullable=False),
        sa.Column("refunded_points", sa.BigInteger(), nullable=False),
        sa.Column("refunded_amount", sa.BigInteger(), nullable=False),
        _now(),
        sa.PrimaryKeyConstraint("merchant_id", "payment_id"),
        sa.CheckConstraint("status IN ('debited', 'refused')", name="ck_stored_value_debits"),
        sa.CheckConstraint("refunded_amount <= amount", name="ck_stored_value_debits_refunded"),
        sa.CheckConstraint(
            "tender IN ('stored_value', 'points')", name="ck_stored_value_debits_tender"
        ),
    )
    op.create_table(
        "points_tender_rates",
        sa.Column("merchant_id", sa.UUID(), primary_key=True),
        sa.Column("points_per_unit", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("points_per_unit > 0", name="ck_points_tender_rates_positive"),
    )
    # Points pay too: a redemption takes them for a payment, a redemption refund gives its
    # share back.
    op.drop_constraint("ck_points_ledger_kind", "points_ledger", type_="check")
    op.create_check_constraint("ck_points_ledger_kind", "points_ledger", f"kind IN {POINTS_KINDS}")
    op.create_table(
        "stored_value_bonus_rules",
        sa.Column("id", sa.UUID(), primary_key=True),
        sa.Column("merchant_id", sa.UUID(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("threshold", sa.BigInteger(), nullable=False),
        sa.Column("bonus", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        _now(),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.UniqueConstraint(
            "merchant_id", "currency", "threshold", name="uq_stored_value_bonus_rules_tier"
        ),
        sa.CheckConstraint("threshold > 0", name="ck_stored_value_bonus_rules_threshold"),
        sa.CheckConstraint("bonus >= 0", name="ck_stored_value_bonus_rules_bonus"),
    )


def downgrade() -> None:
    op.execute("DELETE FROM points_ledger WHERE kind NOT IN ('award', 'reversal', 'import')")
    op.drop_constraint("ck_points_ledger_kind", "points_ledger", type_="check")
    op.create_check_constraint(
        "ck_points_ledger_kind", "points_ledger", "kind IN ('award', 'reversal', 'import')"
    )
    op.drop_table("points_tender_rates")
    op.drop_table("stored_value_bonus_rules")
    op.drop_table("stored_value_debits")
    op.drop_index("ix_stored_value_ledger_payment", table_name="stored_value_ledger")
    op.drop_index("ix_stored_value_ledger_member", table_name="stored_value_ledger")
    op.drop_table("stored_value_ledger")
    op.drop_index("ix_stored_value_accounts_merchant", table_name="stored_value_accounts")
    op.drop_table("stored_value_accounts")
