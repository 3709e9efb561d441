"""Refunds seen per member and order, so a refund that arrives before its order's payment
still reverses the points once they are awarded.

Revision ID: 0003_members_refunds_seen
Revises: 0002
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_members_refunds_seen"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "points_refunds",
        sa.Column("merchant_id", sa.UUID(), nullable=False),
        sa.Column("order_id", sa.UUID(), nullable=False),
        sa.Column("refund_id", sa.UUID(), nullable=False),
        sa.Column("member_id", sa.UUID(), sa.ForeignKey("members.id"), nullable=False),
        sa.Column("refunded_total", sa.BigInteger(), nullable=False),
        sa.Column("order_total", sa.BigInteger(), nullable=False),
        sa.Column("fully_refunded", sa.Boolean(), nullable=False),
        sa.Column("event_id", sa.UUID(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("merchant_id", "order_id", "refund_id"),
    )
    op.create_index("ix_points_refunds_member_order", "points_refunds", ["member_id", "order_id"])


def downgrade() -> None:
    op.drop_index("ix_points_refunds_member_order", table_name="points_refunds")
    op.drop_table("points_refunds")
