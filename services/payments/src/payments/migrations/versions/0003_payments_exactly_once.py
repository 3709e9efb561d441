"""Exactly-once payments: the order replica keyed by (merchant, order) with a monotone state
rank and the order's lines; refunds that may be pending at the provider.

Revision ID: 0003_payments_exactly_once
Revises: 0002
Create Date: 2026-11-26 13:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003_payments_exactly_once"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("order_replicas", sa.Column("state_rank", sa.SmallInteger(), nullable=True))
    op.execute(
        "UPDATE order_replicas SET state_rank = CASE state"
        " WHEN 'open' THEN 1 WHEN 'paid' THEN 2 ELSE 3 END"
    )
    op.alter_column("order_replicas", "state_rank", nullable=False)
    op.add_column(
        "order_replicas",
        sa.Column("lines", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    )
    op.alter_column("order_replicas", "total_amount", nullable=True)
    op.alter_column("order_replicas", "currency", nullable=True)
    op.drop_constraint("order_replicas_pkey", "order_replicas", type_="primary")
    op.create_primary_key("order_replicas_pkey", "order_replicas", ["merchant_id", "order_id"])
    op.drop_index("ix_order_replicas_merchant_id", table_name="order_replicas")

    op.add_column("refunds", sa.Column("failure_reason", sa.Text(), nullable=True))
    op.create_index("ix_refunds_order", "refunds", ["merchant_id", "order_id"])
    op.create_index(
        "ix_refunds_pending",
        "refunds",
        ["created_at"],
        postgresql_where=sa.text("status = 'pending'"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_refunds_pending", table_name="refunds", postgresql_where=sa.text("status = 'pending'")
    )
    op.drop_index("ix_refunds_order", table_name="refunds")
    op.drop_column("refunds", "failure_reason")
    op.create_index("ix_order_replicas_merchant_id", "order_replicas", ["merchant_id"])
    op.drop_constraint("order_replicas_pkey", "order_replicas", type_="primary")
    op.create_primary_key("order_replicas_pkey", "order_replicas", ["order_id"])
    op.execute("DELETE FROM order_replicas WHERE total_amount IS NULL")
    op.alter_column("order_replicas", "currency", nullable=False)
    op.alter_column("order_replicas", "total_amount", nullable=False)
    op.drop_column("order_replicas", "lines")
    op.drop_column("order_replicas", "state_rank")
