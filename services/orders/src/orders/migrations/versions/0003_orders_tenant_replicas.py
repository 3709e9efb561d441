"""Replicas keyed by merchant, a members replica, the HQ price's own version, and refunds that
keep the returned lines asked for beside the ones accepted.

Revision ID: 0003_orders_tenant_replicas
Revises: 0002
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003_orders_tenant_replicas"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Primary keys before and after: ids chosen by other services are unique per merchant only.
REKEYED = {
    "catalog_products": (["product_id"], ["merchant_id", "product_id"]),
    "catalog_store_prices": (["product_id", "store_id"], ["merchant_id", "product_id", "store_id"]),
    "stores": (["store_id"], ["merchant_id", "store_id"]),
}


def upgrade() -> None:
    for table, (_, new) in REKEYED.items():
        op.drop_constraint(f"{table}_pkey", table, type_="primary")
        op.create_primary_key(f"{table}_pkey", table, new)
    op.add_column(
        "catalog_products",
        sa.Column("price_version", sa.Integer(), server_default="0", nullable=False),
    )
    op.execute("UPDATE catalog_products SET price_version = version")
    op.create_table(
        "members",
        sa.Column("merchant_id", sa.UUID(), nullable=False),
        sa.Column("member_id", sa.UUID(), nullable=False),
        sa.Column("level", sa.Text(), nullable=True),
        sa.Column(
            "recorded_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("merchant_id", "member_id"),
    )
    op.add_column(
        "order_refunds",
        sa.Column(
            "requested_returned_lines",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
    )
    op.add_column(
        "order_refunds", sa.Column("announced_at", sa.DateTime(timezone=True), nullable=True)
    )
    # Refunds recorded so far were counted when they arrived.
    op.execute(
        "UPDATE order_refunds SET announced_at = recorded_at, "
        "requested_returned_lines = returned_lines"
    )


def downgrade() -> None:
    op.drop_column("order_refunds", "announced_at")
    op.drop_column("order_refunds", "requested_returned_lines")
    op.drop_table("members")
    op.drop_column("catalog_products", "price_version")
    for table, (old, _) in REKEYED.items():
        op.drop_constraint(f"{table}_pkey", table, type_="primary")
        op.create_primary_key(f"{table}_pkey", table, old)
