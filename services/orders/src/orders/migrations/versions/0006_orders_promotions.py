"""Promotions with their versions, the coupon replica, member levels by version, and the
pricing inputs and per-line adjustments of orders.

Revision ID: 0006_orders_promotions
Revises: 0005_orders_offline_core
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006_orders_promotions"
down_revision: str | None = "0005_orders_offline_core"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UUID = postgresql.UUID(as_uuid=True)
JSONB = postgresql.JSONB()
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("members", sa.Column("version", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("orders", sa.Column("pricing", JSONB, nullable=True))
    op.add_column(
        "order_lines",
        sa.Column("adjustments", JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
    )
    op.create_table(
        "promotions",
        sa.Column("merchant_id", UUID, primary_key=True),
        sa.Column("id", UUID, primary_key=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("version_id", UUID, nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("store_ids", JSONB, nullable=True),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", TS, nullable=False, server_default=sa.func.now()),
    )
    op.create_index("ix_promotions_listing", "promotions", ["merchant_id", "created_at", "id"])
    op.create_table(
        "promotion_versions",
        sa.Column("id", UUID, primary_key=True),
        sa.Column("merchant_id", UUID, nullable=False),
        sa.Column("promotion_id", UUID, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("definition", JSONB, nullable=False),
        sa.Column("created_by", UUID, nullable=True),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
    )
    op.create_index(
        "uq_promotion_versions",
        "promotion_versions",
        ["merchant_id", "promotion_id", "version"],
        unique=True,
    )
    op.create_table(
        "coupons",
        sa.Column("merchant_id", UUID, primary_key=True),
        sa.Column("coupon_id", UUID, primary_key=True),
        sa.Column("member_id", UUID, nullable=False),
        sa.Column("terms", JSONB, nullable=True),
        sa.Column("status", sa.Text(), nullable=False, server_default="available"),
        sa.Column("order_id", UUID, nullable=True),
        sa.Column("store_id", UUID, nullable=True),
        sa.Column("currency", sa.String(3), nullable=True),
        sa.Column("discount", sa.BigInteger(), nullable=True),
        sa.Column("sequence", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("voided_at", TS, nullable=True),
        sa.Column("void_reason", sa.Text(), nullable=True),
        sa.Column("updated_at", TS, nullable=False, server_default=sa.func.now()),
    )
    op.create_index("ix_coupons_order", "coupons", ["merchant_id", "order_id"])


def downgrade() -> None:
    op.drop_table("coupons")
    op.drop_table("promotion_versions")
    op.drop_table("promotions")
    op.drop_column("order_lines", "adjustments")
    op.drop_column("orders", "pricing")
    op.drop_column("members", "version")
