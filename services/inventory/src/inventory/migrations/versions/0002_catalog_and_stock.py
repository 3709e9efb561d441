"""Catalog and stock ledger: products, store prices, stock levels and movements.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UUID = pg.UUID(as_uuid=True)
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "products",
        sa.Column("id", UUID, primary_key=True),
        sa.Column("merchant_id", UUID, nullable=False),
        sa.Column("sku", sa.Text, nullable=False),
        sa.Column("barcode", sa.Text),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("category_id", UUID),
        sa.Column("unit", sa.Text, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("price", sa.BigInteger, nullable=False),
        sa.Column("cost", sa.BigInteger),
        sa.Column("tax_rate_bps", sa.Integer, nullable=False),
        sa.Column("is_tobacco", sa.Boolean, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("kitchen_station", sa.Text),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", TS, nullable=False, server_default=sa.func.now()),
        sa.UniqueConstraint("merchant_id", "sku", name="uq_products_merchant_sku"),
        sa.UniqueConstraint("merchant_id", "barcode", name="uq_products_merchant_barcode"),
    )
    op.create_index("ix_products_merchant_id", "products", ["merchant_id"])
    op.create_table(
        "store_prices",
        sa.Column("product_id", UUID, sa.ForeignKey("products.id"), primary_key=True),
        sa.Column("store_id", UUID, primary_key=True),
        sa.Column("merchant_id", UUID, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("price", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "stock_levels",
        sa.Column("store_id", UUID, primary_key=True),
        sa.Column("product_id", UUID, sa.ForeignKey("products.id"), primary_key=True),
        sa.Column("merchant_id", UUID, nullable=False),
        sa.Column("on_hand", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("last_count_at", TS),
        sa.Column("low_threshold", sa.BigInteger),
        sa.Column("low_alerted", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("updated_at", TS, nullable=False, server_default=sa.func.now()),
    )
    op.create_index("ix_stock_levels_merchant_id", "stock_levels", ["merchant_id"])
    op.create_table(
        "stock_movements",
        sa.Column("id", UUID, primary_key=True),
        sa.Column("merchant_id", UUID, nullable=False),
        sa.Column("store_id", UUID, nullable=False),
        sa.Column("product_id", UUID, sa.ForeignKey("products.id"), nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("quantity", sa.BigInteger, nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("reference", sa.Text),
        sa.Column("source_key", sa.Text),
        sa.Column("occurred_at", TS, nullable=False),
        sa.Column("recorded_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("absorbed", sa.Boolean, nullable=False),
        sa.Column("on_hand_after", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("merchant_id", "source_key", name="uq_stock_movements_source"),
    )
    op.create_index(
        "ix_stock_movements_store_product",
        "stock_movements",
        ["store_id", "product_id", "occurred_at"],
    )


def downgrade() -> None:
    op.drop_table("stock_movements")
    op.drop_table("stock_levels")
    op.drop_table("store_prices")
    op.drop_table("products")
