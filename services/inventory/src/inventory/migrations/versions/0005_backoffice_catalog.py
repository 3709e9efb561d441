"""The back office of a chain: categories, tax rates, barcodes and pack sizes, suppliers and
purchase orders, stocktakes and transfers between stores, tobacco codes.

Revision ID: 0005_backoffice_catalog
Revises: 0004_outbox_delivery_tracking
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision: str = "0005_backoffice_catalog"
down_revision: str | None = "0004_outbox_delivery_tracking"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UUID = pg.UUID(as_uuid=True)


def _now() -> sa.Column[sa.DateTime]:
    return sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    )


def _product_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["merchant_id", "product_id"],
        ["products.merchant_id", "products.id"],
        name=f"fk_{table}_product",
    )


def upgrade() -> None:
    # The store's day (tobacco reports, scheduled prices) and its region (store groups).
    op.add_column("stores", sa.Column("timezone", sa.Text, nullable=True))
    op.add_column("stores", sa.Column("region_id", UUID, nullable=True))
    op.create_table(
        "categories",
        sa.Column("merchant_id", UUID, primary_key=True),
        sa.Column("id", UUID, primary_key=True),
        sa.Column("parent_id", UUID, nullable=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        _now(),
        sa.ForeignKeyConstraint(
            ["merchant_id", "parent_id"],
            ["categories.merchant_id", "categories.id"],
            name="fk_categories_parent",
        ),
        sa.UniqueConstraint("merchant_id", "parent_id", "name", name="uq_categories_name"),
    )
    op.create_table(
        "tax_rates",
        sa.Column("merchant_id", UUID, primary_key=True),
        sa.Column("rate_bps", sa.Integer, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
    )
    op.add_column(
        "products",
        sa.Column("packs", pg.JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
    )
    op.add_column("products", sa.Column("tobacco_code", sa.Text, nullable=True))
    op.add_column(
        "products",
        sa.Column("store_override", sa.Text, nullable=False, server_default="allowed"),
    )
    op.add_column("products", sa.Column("override_min", sa.BigInteger, nullable=True))
    op.add_column("products", sa.Column("override_max", sa.BigInteger, nullable=True))
    op.add_column(
        "products",
        sa.Column(
            "extra_barcodes", pg.JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")
        ),
    )
    op.create_table(
        "product_barcodes",
        sa.Column("merchant_id", UUID, primary_key=True),
        sa.Column("barcode", sa.Text, primary_key=True),
        sa.Column("product_id", UUID, nullable=False),
        sa.Column("pack_unit", sa.Text, nullable=True),
        sa.Column("pack_quantity", sa.Integer, nullable=False, server_default="1"),
        _product_fk("product_barcodes"),
    )
    op.create_index(
        "ix_product_barcodes_product", "product_barcodes", ["merchant_id", "product_id"]
    )
    # Every product's primary barcode is one of its barcodes.
    op.execute(
        "INSERT INTO product_barcodes (merchant_id, barcode, product_id) "
        "SELECT merchant_id, barcode, id FROM products WHERE barcode IS NOT NULL"
    )

    op.create_table(
        "suppliers",
        sa.Column("merchant_id", UUID, primary_key=True),
        sa.Column("id", UUID, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("contacts", pg.JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
        sa.Column("tobacco_licence", sa.Text, nullable=True),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        _now(),
    )
    op.create_table(
        "supplier_products",
        sa.Column("merchant_id", UUID, primary_key=True),
        sa.Column("supplier_id", UUID, primary_key=True),
        sa.Column("product_id", UUID, primary_key=True),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("cost", sa.BigInteger, nullable=False),
        sa.Column("supplier_sku", sa.Text, nullable=True),
        sa.CheckConstraint("cost >= 0", name="ck_supplier_products_cost"),
        sa.ForeignKeyConstraint(
            ["merchant_id", "supplier_id"],
            ["suppliers.merchant_id", "suppliers.id"],
            name="fk_supplier_products_supplier",
        ),
        _product_fk("supplier_products"),
    )
    op.create_table(
        "purchase_orders",
        sa.Column("merchant_id", UUID, primary_key=True),
        sa.Column("id", UUID, primary_key=True),
        sa.Column("number", sa.Text, nullable=False),
        sa.Column("supplier_id", UUID, nullable=False),
        sa.Column("store_id", UUID, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("note", sa.Text, nullable=True),
        sa.Column("tobacco_licence", sa.Text, nullable=True),
        sa.Column("version", sa.Integer, nullable=False),
        _now(),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("merchant_id", "number", name="uq_purchase_orders_number"),
        sa.ForeignKeyConstraint(
            ["merchant_id", "supplier_id"],
            ["suppliers.merchant_id", "suppliers.id"],
            name="fk_purchase_orders_supplier",
        ),
    )
    op.create_table(
        "purchase_order_lines",
        sa.Column("merchant_id", UUID, primary_key=True),
        sa.Column("purchase_order_id", UUID, primary_key=True),
        sa.Column("product_id", UUID, primary_key=True),
        sa.Column("ordered", sa.BigInteger, nullable=False),
        sa.Column("received", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("unit_cost", sa.BigInteger, nullable=False),
        sa.Column("pack_unit", sa.Text, nullable=True),
        sa.Column("pack_quantity", sa.Integer, nullable=False, server_default="1"),
        sa.CheckConstraint("unit_cost >= 0", name="ck_purchase_order_lines_cost"),
        sa.ForeignKeyConstraint(
            ["merchant_id", "purchase_order_id"],
            ["purchase_orders.merchant_id", "purchase_orders.id"],
            name="fk_purchase_order_lines_order",
        ),
        _product_fk("purchase_order_lines"),
    )
    op.create_table(
        "purchase_receipts",
        sa.Column("merchant_id", UUID, primary_key=True),
        sa.Column("id", UUID, primary_key=True),
        sa.Column("purchase_order_id", UUID, nullable=False),
        sa.Column("store_id", UUID, nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lines", pg.JSONB, nullable=False),
        _now(),
        sa.ForeignKeyConstraint(
            ["merchant_id", "purchase_order_id"],
            ["purchase_orders.merchant_id", "purchase_orders.id"],
            name="fk_purchase_receipts_order",
        ),
    )

    op.create_table(
        "stocktakes",
        sa.Column("merchant_id", UUID, primary_key=True),
        sa.Column("id", UUID, primary_key=True),
        sa.Column("store_id", UUID, nullable=False),
        sa.Column("category_id", UUID, nullable=True),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("approved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("approved_by", UUID, nullable=True),
        sa.Column("version", sa.Integer, nullable=False),
    )
    # One open stocktake per store: two would fight over the same shelves.
    op.create_index(
        "uq_stocktakes_open_store",
        "stocktakes",
        ["merchant_id", "store_id"],
        unique=True,
        postgresql_where=sa.text("status = 'open'"),
    )
    op.create_table(
        "stocktake_lines",
        sa.Column("merchant_id", UUID, primary_key=True),
        sa.Column("stocktake_id", UUID, primary_key=True),
        sa.Column("product_id", UUID, primary_key=True),
        sa.Column("book_quantity", sa.BigInteger, nullable=False),
        sa.Column("counted", sa.BigInteger, nullable=True),
        sa.Column("last_counted_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["merchant_id", "stocktake_id"],
            ["stocktakes.merchant_id", "stocktakes.id"],
            name="fk_stocktake_lines_stocktake",
        ),
        _product_fk("stocktake_lines"),
    )
    op.create_table(
        "stocktake_entries",
        sa.Column("id", UUID, primary_key=True),
        sa.Column("merchant_id", UUID, nullable=False),
        sa.Column("stocktake_id", UUID, nullable=False),
        sa.Column("product_id", UUID, nullable=False),
        sa.Column("quantity", sa.BigInteger, nullable=False),
        sa.Column("device_id", sa.Text, nullable=True),
        sa.Column("counted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("counted_by", UUID, nullable=False),
        sa.ForeignKeyConstraint(
            ["merchant_id", "stocktake_id"],
            ["stocktakes.merchant_id", "stocktakes.id"],
            name="fk_stocktake_entries_stocktake",
        ),
    )

    op.create_table(
        "transfers",
        sa.Column("merchant_id", UUID, primary_key=True),
        sa.Column("id", UUID, primary_key=True),
        sa.Column("from_store_id", UUID, nullable=False),
        sa.Column("to_store_id", UUID, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("note", sa.Text, nullable=True),
        sa.Column("version", sa.Integer, nullable=False),
        _now(),
        sa.Column("shipped_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("from_store_id <> to_store_id", name="ck_transfers_stores"),
    )
    op.create_table(
        "transfer_lines",
        sa.Column("merchant_id", UUID, primary_key=True),
        sa.Column("transfer_id", UUID, primary_key=True),
        sa.Column("product_id", UUID, primary_key=True),
        sa.Column("requested", sa.BigInteger, nullable=False),
        sa.Column("shipped", sa.BigInteger, nullable=True),
        sa.Column("received", sa.BigInteger, nullable=True),
        sa.ForeignKeyConstraint(
            ["merchant_id", "transfer_id"],
            ["transfers.merchant_id", "transfers.id"],
            name="fk_transfer_lines_transfer",
        ),
        _product_fk("transfer_lines"),
    )

    op.create_table(
        "store_groups",
        sa.Column("merchant_id", UUID, primary_key=True),
        sa.Column("id", UUID, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("store_ids", pg.ARRAY(UUID), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        _now(),
    )
    op.create_table(
        "price_changes",
        sa.Column("merchant_id", UUID, primary_key=True),
        sa.Column("id", UUID, primary_key=True),
        sa.Column("store_group_id", UUID, nullable=True),
        sa.Column("all_stores", sa.Boolean, nullable=False),
        sa.Column("effective_local", sa.DateTime(timezone=False), nullable=True),
        sa.Column("lines", pg.JSONB, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("created_by", UUID, nullable=False),
        _now(),
    )
    op.create_table(
        "price_change_stores",
        sa.Column("merchant_id", UUID, primary_key=True),
        sa.Column("price_change_id", UUID, primary_key=True),
        sa.Column("store_id", UUID, primary_key=True),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancelled", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.ForeignKeyConstraint(
            ["merchant_id", "price_change_id"],
            ["price_changes.merchant_id", "price_changes.id"],
            name="fk_price_change_stores_change",
        ),
    )
    # What the scheduler scans: pending rows by due time, across merchants.
    op.create_index(
        "ix_price_change_stores_due",
        "price_change_stores",
        ["due_at"],
        postgresql_where=sa.text("applied_at IS NULL AND NOT cancelled"),
    )

    op.create_table(
        "product_imports",
        sa.Column("merchant_id", UUID, primary_key=True),
        sa.Column("id", UUID, primary_key=True),
        sa.Column("dry_run", sa.Boolean, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("rows", pg.JSONB, nullable=False),
        sa.Column("total_rows", sa.Integer, nullable=False),
        sa.Column("processed_rows", sa.Integer, nullable=False, server_default="0"),
        sa.Column("results", pg.JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
        sa.Column("created_by", UUID, nullable=False),
        _now(),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index(
        "ix_product_imports_running",
        "product_imports",
        ["created_at"],
        postgresql_where=sa.text("status = 'running'"),
    )


def downgrade() -> None:
    for table in (
        "product_imports",
        "price_change_stores",
        "price_changes",
        "store_groups",
        "transfer_lines",
        "transfers",
        "stocktake_entries",
        "stocktake_lines",
        "stocktakes",
        "purchase_receipts",
        "purchase_order_lines",
        "purchase_orders",
        "supplier_products",
        "suppliers",
        "product_barcodes",
        "tax_rates",
        "categories",
    ):
        op.drop_table(table)
    op.drop_column("products", "extra_barcodes")
    op.drop_column("products", "override_max")
    op.drop_column("products", "override_min")
    op.drop_column("products", "store_override")
    op.drop_column("products", "tobacco_code")
    op.drop_column("products", "packs")
    op.drop_column("stores", "region_id")
    op.drop_column("stores", "timezone")
