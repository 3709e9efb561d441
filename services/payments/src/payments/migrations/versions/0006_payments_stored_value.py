"""Payments that are not sales (stored-value recharges: no order, a member) and payments by
stored value (a member whose account members debits).

Revision ID: 0006_payments_stored_value
Revises: 0005_payments_business_day
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_payments_stored_value"
down_revision: str | None = "0005_payments_business_day"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "payments", sa.Column("purpose", sa.Text(), nullable=False, server_default="order")
    )
    op.add_column("payments", sa.Column("member_id", sa.UUID(), nullable=True))
    op.alter_column("payments", "order_id", nullable=True)
    op.alter_column("refunds", "order_id", nullable=True)
    op.create_check_constraint(
        "ck_payments_purpose",
        "payments",
        "(purpose = 'order' AND order_id IS NOT NULL) OR (purpose = "
        "'stored_value_recharge' AND order_id IS NULL AND member_id IS NOT NULL)",
    )
    op.create_index(
        "ix_payments_member",
        "payments",
        ["merchant_id", "member_id", "created_at"],
        postgresql_where=sa.text("member_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_payments_member", table_name="payments")
    op.drop_constraint("ck_payments_purpose", "payments", type_="check")
    op.execute("DELETE FROM refunds WHERE order_id IS NULL")
    op.execute("DELETE FROM payments WHERE order_id IS NULL")
    op.alter_column("refunds", "order_id", nullable=False)
    op.alter_column("payments", "order_id", nullable=False)
    op.drop_column("payments", "member_id")
    op.drop_column("payments", "purpose")
