"""Key the catalog and the ledger by merchant, refuse negative prices, add the store replica.

Product ids are chosen by clients and unique per merchant only: products, store prices and
stock levels get primary keys that start with ``merchant_id``, and the ledger's references to
products carry the merchant too. ``stores`` holds identity's stores so that a write naming a
store can check that the store is the caller's.

Revision ID: 0003_inventory_tenant_keys
Revises: 0002
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision: str = "0003_inventory_tenant_keys"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UUID = pg.UUID(as_uuid=True)
_REFERENCING = ("store_prices", "stock_levels", "stock_movements")


def upgrade() -> None:
    for table in _REFERENCING:
        op.drop_constraint(f"{table}_product_id_fkey", table, type_="foreignkey")
    op.drop_constraint("products_pkey", "products", type_="primary")
    op.create_primary_key("products_pkey", "products", ["merchant_id", "id"])
    op.drop_index("ix_products_merchant_id", table_name="products")
    op.create_check_constraint("ck_products_price", "products", "price >= 0")
    op.create_check_constraint("ck_products_cost", "products", "cost IS NULL OR cost >= 0")

    op.drop_constraint("store_prices_pkey", "store_prices", type_="primary")
    op.create_primary_key(
        "store_prices_pkey", "store_prices", ["merchant_id", "product_id", "store_id"]
    )
    op.create_check_constraint("ck_store_prices_price", "store_prices", "price >= 0")

    op.drop_constraint("stock_levels_pkey", "stock_levels", type_="primary")
    op.create_primary_key(
        "stock_levels_pkey", "stock_levels", ["merchant_id", "store_id", "product_id"]
    )
    op.drop_index("ix_stock_levels_merchant_id", table_name="stock_levels")

    op.drop_index("ix_stock_movements_store_product", table_name="stock_movements")
    op.create_index(
        "ix_stock_movements_merchant_store_product",
        "stock_movements",
        ["merchant_id", "store_id", "product_id", "occurred_at"],
    )
    for table in _REFERENCING:
        op.create_foreign_key(
            f"fk_{table}_product",
            table,
            "products",
            ["merchant_id", "product_id"],
            ["merchant_id", "id"],
        )

    op.create_table(
        "stores",
        sa.Column("merchant_id", UUID, primary_key=True),
        sa.Column("store_id", UUID, primary_key=True),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("stores")
    for table in _REFERENCING:
        op.drop_constraint(f"fk_{table}_product", table, type_="foreignkey")
    op.drop_index("ix_stock_movements_merchant_store_product", table_name="stock_movements")
    op.create_index(
        "ix_stock_movements_store_product",
        "stock_movements",
        ["store_id", "product_id", "occurred_at"],
    )
    op.create_index("ix_stock_levels_merchant_id", "stock_levels", ["merchant_id"])
    op.drop_constraint("stock_levels_pkey", "stock_levels", type_="primary")
    op.create_primary_key("stock_levels_pkey", "stock_levels", ["store_id", "product_id"])
    op.drop_constraint("ck_store_prices_price", "store_prices", type_="check")
    op.drop_constraint("store_prices_pkey", "store_prices", type_="primary")
    op.create_primary_key("store_prices_pkey", "store_prices", ["product_id", "store_id"])
    op.drop_constraint("ck_products_cost", "products", type_="check")
    op.drop_constraint("ck_products_price", "products", type_="check")
    op.create_index("ix_products_merchant_id", "products", ["merchant_id"])
    op.drop_constraint("products_pkey", "products", type_="primary")
    op.create_primary_key("products_pkey", "products", ["id"])
    for table in _REFERENCING:
        op.create_foreign_key(f"{table}_product_id_fkey", table, "products", ["product_id"], ["id"])
