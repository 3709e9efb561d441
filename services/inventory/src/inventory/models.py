"""Tables of the inventory service: the catalog (products and per-store prices), the stock
ledger (append-only movements plus one balance row per store and product) and the replica of
identity's stores.

Every table is keyed by merchant first: product ids are chosen by clients and are unique per
merchant only, so two merchants may hold the same product id without seeing each other."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from servicekit.schema import define_platform_tables


class Base(DeclarativeBase):
    metadata = sa.MetaData()


platform_tables = define_platform_tables(Base.metadata)


class Product(Base):
    """A product of a merchant's HQ catalog; ``version`` grows with every change."""

    __tablename__ = "products"
    __table_args__ = (
        sa.CheckConstraint("price >= 0", name="ck_products_price"),
        sa.CheckConstraint("cost IS NULL OR cost >= 0", name="ck_products_cost"),
        sa.UniqueConstraint("merchant_id", "sku", name="uq_products_merchant_sku"),
        sa.UniqueConstraint("merchant_id", "barcode", name="uq_products_merchant_barcode"),
    )

    merchant_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), primary_key=True)
    sku: Mapped[str] = mapped_column(sa.Text)
    barcode: Mapped[str | None] = mapped_column(sa.Text)
    name: Mapped[str] = mapped_column(sa.Text)
    category_id: Mapped[uuid.UUID | None] = mapped_column(pg.UUID(as_uuid=True))
    unit: Mapped[str] = mapped_column(sa.Text)
    currency: Mapped[str] = mapped_column(sa.String(3))
    price: Mapped[int] = mapped_column(sa.BigInteger)
    cost: Mapped[int | None] = mapped_column(sa.BigInteger)
    tax_rate_bps: Mapped[int] = mapped_column(sa.Integer)
    is_tobacco: Mapped[bool] = mapped_column(sa.Boolean)
    status: Mapped[str] = mapped_column(sa.Text)
    kitchen_station: Mapped[str | None] = mapped_column(sa.Text)
    #: Packs the product is bought in, ``[{"unit": "case", "quantity": 24}]``: stock is
    #: always kept in singles.
    packs: Mapped[list[dict[str, Any]]] = mapped_column(pg.JSONB, server_default="[]")
    #: The tobacco bureau's code of a tobacco product.
    tobacco_code: Mapped[str | None] = mapped_column(sa.Text)
    #: Barcodes beyond ``barcode`` and the packs' own, ``[{"barcode", "pack_unit"}]``; every
    #: barcode is also a row of ``product_barcodes``, which keeps them unique and looks them up.
    extra_barcodes: Mapped[list[dict[str, Any]]] = mapped_column(pg.JSONB, server_default="[]")
    #: What a store's own staff may do to the price: ``allowed``, ``forbidden`` or ``range``
    #: (between ``override_min`` and ``override_max``). HQ's distributed prices always apply.
    store_override: Mapped[str] = mapped_column(sa.Text, server_default="allowed")
    override_min: Mapped[int | None] = mapped_column(sa.BigInteger)
    override_max: Mapped[int | None] = mapped_column(sa.BigInteger)
    version: Mapped[int] = mapped_column(sa.Integer)
    created_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=sa.func.now()
    )
    updated_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=sa.func.now()
    )


class StorePrice(Base):
    """A store's own price of a product, overriding the HQ price in that store."""

    __tablename__ = "store_prices"
    __table_args__ = (
        sa.ForeignKeyConstraint(
            ["merchant_id", "product_id"],
            ["products.merchant_id", "products.id"],
            name="fk_store_prices_product",
        ),
        sa.CheckConstraint("price >= 0", name="ck_store_prices_price"),
    )

    merchant_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), primary_key=True)
    product_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), primary_key=True)
    store_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), primary_key=True)
    currency: Mapped[str] = mapped_column(sa.String(3))
    price: Mapped[int] = mapped_column(sa.BigInteger)


class StockLevel(Base):
    """The on-hand balance of one product in one store, derived from the ledger.

    Kept in step with ``stock_movements`` in the same transaction, under a row lock, so
    concurrent sales never lose an update. ``last_count_at`` is the ``occurred_at`` of the
    latest physical count: movements dated before it are absorbed by it.
    """

    __tablename__ = "stock_levels"
    __table_args__ = (
        sa.ForeignKeyConstraint(
            ["merchant_id", "product_id"],
            ["products.merchant_id", "products.id"],
            name="fk_stock_levels_product",
        ),
    )

    merchant_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), primary_key=True)
    store_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), primary_key=True)
    product_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), primary_key=True)
    on_hand: Mapped[int] = mapped_column(sa.BigInteger, server_default="0")
    last_count_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    low_threshold: Mapped[int | None] = mapped_column(sa.BigInteger)
    # True from the moment a low-stock alert went out until stock rises above the threshold.
    low_alerted: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.false())
    updated_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=sa.func.now()
    )


class StockMovement(Base):
    """One line of the append-only stock ledger.

    ``quantity`` is a signed change, except for ``count`` where it is the counted figure.
    ``source_key`` makes effects of events idempotent (``sale:<order>:<product>``).
    """

    __tablename__ = "stock_movements"
    __table_args__ = (
        sa.UniqueConstraint("merchant_id", "source_key", name="uq_stock_movements_source"),
        sa.Index(
            "ix_stock_movements_merchant_store_product",
            "merchant_id",
            "store_id",
            "product_id",
            "occurred_at",
        ),
        sa.ForeignKeyConstraint(
            ["merchant_id", "product_id"],
            ["products.merchant_id", "products.id"],
            name="fk_stock_movements_product",
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), primary_key=True)
    merchant_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True))
    store_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True))
    product_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True))
    kind: Mapped[str] = mapped_column(sa.Text)
    quantity: Mapped[int] = mapped_column(sa.BigInteger)
    reason: Mapped[str | None] = mapped_column(sa.Text)
    reference: Mapped[str | None] = mapped_column(sa.Text)
    source_key: Mapped[str | None] = mapped_column(sa.Text)
    occurred_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    recorded_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=sa.func.now()
    )
    # A movement dated before the latest count changes nothing: the count already saw it.
    absorbed: Mapped[bool] = mapped_column(sa.Boolean)
    on_hand_after: Mapped[int] = mapped_column(sa.BigInteger)


class Store(Base):
    """Identity's store as of ``version``, from ``identity.store.*`` events: a write naming a
    store needs the store here, under the caller's merchant, and active."""

    __tablename__ = "stores"

    merchant_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), primary_key=True)
    store_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), primary_key=True)
    status: Mapped[str] = mapped_column(sa.Text)
    version: Mapped[int] = mapped_column(sa.Integer)
    #: IANA name; the store's business day. Unknown until a created/updated event arrives.
    timezone: Mapped[str | None] = mapped_column(sa.Text)
    region_id: Mapped[uuid.UUID | None] = mapped_column(pg.UUID(as_uuid=True))


def _product_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["merchant_id", "product_id"],
        ["products.merchant_id", "products.id"],
        name=f"fk_{table}_product",
    )


def _created() -> Mapped[datetime]:
    return mapped_column(sa.DateTime(timezone=True), server_default=sa.func.now())


class Category(Base):
    """A node of the merchant's category tree."""

    __tablename__ = "categories"
    __table_args__ = (
        sa.ForeignKeyConstraint(
            ["merchant_id", "parent_id"],
            ["categories.merchant_id", "categories.id"],
            name="fk_categories_parent",
        ),
        sa.UniqueConstraint("merchant_id", "parent_id", "name", name="uq_categories_name"),
    )

    merchant_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), primary_key=True)
    parent_id: Mapped[uuid.UUID | None] = mapped_column(pg.UUID(as_uuid=True))
    name: Mapped[str] = mapped_column(sa.Text)
    version: Mapped[int] = mapped_column(sa.Integer)
    created_at: Mapped[datetime] = _created()


class TaxRate(Base):
    """A tax rate the merchant uses; products may only carry one of these."""

    __tablename__ = "tax_rates"

    merchant_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), primary_key=True)
    rate_bps: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    name: Mapped[str] = mapped_column(sa.Text)


class ProductBarcode(Base):
    """One of a product's barcodes; a pack's barcode scans as ``pack_quantity`` singles."""

    __tablename__ = "product_barcodes"
    __table_args__ = (
        _product_fk("product_barcodes"),
        sa.Index("ix_product_barcodes_product", "merchant_id", "product_id"),
    )

    merchant_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), primary_key=True)
    barcode: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    product_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True))
    pack_unit: Mapped[str | None] = mapped_column(sa.Text)
    pack_quantity: Mapped[int] = mapped_column(sa.Integer, server_default="1")


class Supplier(Base):
    __tablename__ = "suppliers"

    merchant_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), primary_key=True)
    name: Mapped[str] = mapped_column(sa.Text)
    contacts: Mapped[list[dict[str, Any]]] = mapped_column(pg.JSONB, server_default="[]")
    #: The tobacco retail/wholesale licence: only a licensed supplier may sell us tobacco.
    tobacco_licence: Mapped[str | None] = mapped_column(sa.Text)
    status: Mapped[str] = mapped_column(sa.Text)
    version: Mapped[int] = mapped_column(sa.Integer)
    created_at: Mapped[datetime] = _created()


class SupplierProduct(Base):
    """A product a supplier sells us, at its cost price (per single)."""

    __tablename__ = "supplier_products"
    __table_args__ = (
        sa.CheckConstraint("cost >= 0", name="ck_supplier_products_cost"),
        sa.ForeignKeyConstraint(
            ["merchant_id", "supplier_id"],
            ["suppliers.merchant_id", "suppliers.id"],
            name="fk_supplier_products_supplier",
        ),
        _product_fk("supplier_products"),
    )

    merchant_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), primary_key=True)
    supplier_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), primary_key=True)
    product_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), primary_key=True)
    currency: Mapped[str] = mapped_column(sa.String(3))
    cost: Mapped[int] = mapped_column(sa.BigInteger)
    supplier_sku: Mapped[str | None] = mapped_column(sa.Text)


class PurchaseOrder(Base):
    __tablename__ = "purchase_orders"
    __table_args__ = (
        sa.UniqueConstraint("merchant_id", "number", name="uq_purchase_orders_number"),
        sa.ForeignKeyConstraint(
            ["merchant_id", "supplier_id"],
            ["suppliers.merchant_id", "suppliers.id"],
            name="fk_purchase_orders_supplier",
        ),
    )

    merchant_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), primary_key=True)
    number: Mapped[str] = mapped_column(sa.Text)
    supplier_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True))
    store_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True))
    status: Mapped[str] = mapped_column(sa.Text)
    currency: Mapped[str] = mapped_column(sa.String(3))
    note: Mapped[str | None] = mapped_column(sa.Text)
    #: The supplier's tobacco licence as of sending, for an order with tobacco on it.
    tobacco_licence: Mapped[str | None] = mapped_column(sa.Text)
    version: Mapped[int] = mapped_column(sa.Integer)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))


class PurchaseOrderLine(Base):
    """``ordered`` and ``received`` are singles; ``unit_cost`` is per single."""

    __tablename__ = "purchase_order_lines"
    __table_args__ = (
        sa.CheckConstraint("unit_cost >= 0", name="ck_purchase_order_lines_cost"),
        sa.ForeignKeyConstraint(
            ["merchant_id", "purchase_order_id"],
            ["purchase_orders.merchant_id", "purchase_orders.id"],
            name="fk_purchase_order_lines_order",
        ),
        _product_fk("purchase_order_lines"),
    )

    merchant_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), primary_key=True)
    purchase_order_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), primary_key=True)
    product_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), primary_key=True)
    ordered: Mapped[int] = mapped_column(sa.BigInteger)
    received: Mapped[int] = mapped_column(sa.BigInteger, server_default="0")
    unit_cost: Mapped[int] = mapped_column(sa.BigInteger)
    pack_unit: Mapped[str | None] = mapped_column(sa.Text)
    pack_quantity: Mapped[int] = mapped_column(sa.Integer, server_default="1")


class PurchaseReceipt(Base):
    """Goods received against a purchase order: a stock-in with the order as its document."""

    __tablename__ = "purchase_receipts"
    __table_args__ = (
        sa.ForeignKeyConstraint(
            ["merchant_id", "purchase_order_id"],
            ["purchase_orders.merchant_id", "purchase_orders.id"],
            name="fk_purchase_receipts_order",
        ),
    )

    merchant_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), primary_key=True)
    purchase_order_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True))
    store_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True))
    occurred_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    #: ``[{"product_id", "quantity", "unit_cost"}]`` as received.
    lines: Mapped[list[dict[str, Any]]] = mapped_column(pg.JSONB)
    created_at: Mapped[datetime] = _created()


class Stocktake(Base):
    """A counting session of one store (every product, or one category and its subtree)."""

    __tablename__ = "stocktakes"
    __table_args__ = (
        sa.Index(
            "uq_stocktakes_open_store",
            "merchant_id",
            "store_id",
            unique=True,
            postgresql_where=sa.text("status = 'open'"),
        ),
    )

    merchant_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), primary_key=True)
    store_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True))
    category_id: Mapped[uuid.UUID | None] = mapped_column(pg.UUID(as_uuid=True))
    status: Mapped[str] = mapped_column(sa.Text)
    started_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    approved_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    approved_by: Mapped[uuid.UUID | None] = mapped_column(pg.UUID(as_uuid=True))
    version: Mapped[int] = mapped_column(sa.Integer)


class StocktakeLine(Base):
    """``book_quantity`` is on-hand frozen at the start; ``counted`` the sum of every entry."""

    __tablename__ = "stocktake_lines"
    __table_args__ = (
        sa.ForeignKeyConstraint(
            ["merchant_id", "stocktake_id"],
            ["stocktakes.merchant_id", "stocktakes.id"],
            name="fk_stocktake_lines_stocktake",
        ),
        _product_fk("stocktake_lines"),
    )

    merchant_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), primary_key=True)
    stocktake_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), primary_key=True)
    product_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), primary_key=True)
    book_quantity: Mapped[int] = mapped_column(sa.BigInteger)
    counted: Mapped[int | None] = mapped_column(sa.BigInteger)
    last_counted_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))


class StocktakeEntry(Base):
    """One scan or entry of one device: the audit trail behind a line's ``counted``."""

    __tablename__ = "stocktake_entries"
    __table_args__ = (
        sa.ForeignKeyConstraint(
            ["merchant_id", "stocktake_id"],
            ["stocktakes.merchant_id", "stocktakes.id"],
            name="fk_stocktake_entries_stocktake",
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), primary_key=True)
    merchant_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True))
    stocktake_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True))
    product_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True))
    quantity: Mapped[int] = mapped_column(sa.BigInteger)
    device_id: Mapped[str | None] = mapped_column(sa.Text)
    counted_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    counted_by: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True))


class Transfer(Base):
    """Goods moving from one store to another: requested, shipped (in transit), received."""

    __tablename__ = "transfers"
    __table_args__ = (
        sa.CheckConstraint("from_store_id <> to_store_id", name="ck_transfers_stores"),
    )

    merchant_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), primary_key=True)
    from_store_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True))
    to_store_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True))
    status: Mapped[str] = mapped_column(sa.Text)
    note: Mapped[str | None] = mapped_column(sa.Text)
    version: Mapped[int] = mapped_column(sa.Integer)
    created_at: Mapped[datetime] = _created()
    shipped_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    received_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))


class TransferLine(Base):
    __tablename__ = "transfer_lines"
    __table_args__ = (
        sa.ForeignKeyConstraint(
            ["merchant_id", "transfer_id"],
            ["transfers.merchant_id", "transfers.id"],
            name="fk_transfer_lines_transfer",
        ),
        _product_fk("transfer_lines"),
    )

    merchant_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), primary_key=True)
    transfer_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), primary_key=True)
    product_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), primary_key=True)
    requested: Mapped[int] = mapped_column(sa.BigInteger)
    shipped: Mapped[int | None] = mapped_column(sa.BigInteger)
    received: Mapped[int | None] = mapped_column(sa.BigInteger)


class StoreGroup(Base):
    """A set of stores HQ prices together (a city, a format)."""

    __tablename__ = "store_groups"

    merchant_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), primary_key=True)
    name: Mapped[str] = mapped_column(sa.Text)
    store_ids: Mapped[list[uuid.UUID]] = mapped_column(pg.ARRAY(pg.UUID(as_uuid=True)))
    version: Mapped[int] = mapped_column(sa.Integer)
    created_at: Mapped[datetime] = _created()


class PriceChange(Base):
    """HQ's new prices for every store or a group, now or at a local time in each store."""

    __tablename__ = "price_changes"

    merchant_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), primary_key=True)
    store_group_id: Mapped[uuid.UUID | None] = mapped_column(pg.UUID(as_uuid=True))
    all_stores: Mapped[bool] = mapped_column(sa.Boolean)
    #: Wall-clock time in each store's timezone; ``None``: at once.
    effective_local: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=False))
    #: ``[{"product_id", "amount", "currency"}]``.
    lines: Mapped[list[dict[str, Any]]] = mapped_column(pg.JSONB)
    status: Mapped[str] = mapped_column(sa.Text)
    created_by: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True))
    created_at: Mapped[datetime] = _created()


class PriceChangeStore(Base):
    """One store's part of a price change, due at the change's local time in that store."""

    __tablename__ = "price_change_stores"
    __table_args__ = (
        sa.ForeignKeyConstraint(
            ["merchant_id", "price_change_id"],
            ["price_changes.merchant_id", "price_changes.id"],
            name="fk_price_change_stores_change",
        ),
        sa.Index(
            "ix_price_change_stores_due",
            "due_at",
            postgresql_where=sa.text("applied_at IS NULL AND NOT cancelled"),
        ),
    )

    merchant_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), primary_key=True)
    price_change_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), primary_key=True)
    store_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), primary_key=True)
    due_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    applied_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    cancelled: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.false())


class ProductImport(Base):
    """A file of products being imported, a chunk of rows per transaction: ``processed_rows``
    moves in the same transaction as the chunk's products, so a crash resumes where the last
    chunk ended and no row is applied twice."""

    __tablename__ = "product_imports"
    __table_args__ = (
        sa.Index(
            "ix_product_imports_running",
            "created_at",
            postgresql_where=sa.text("status = 'running'"),
        ),
    )

    merchant_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), primary_key=True)
    dry_run: Mapped[bool] = mapped_column(sa.Boolean)
    status: Mapped[str] = mapped_column(sa.Text)
    #: The file's rows as read, ``{column: text}``.
    rows: Mapped[list[dict[str, Any]]] = mapped_column(pg.JSONB)
    total_rows: Mapped[int] = mapped_column(sa.Integer)
    processed_rows: Mapped[int] = mapped_column(sa.Integer, server_default="0")
    results: Mapped[list[dict[str, Any]]] = mapped_column(pg.JSONB, server_default="[]")
    created_by: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True))
    created_at: Mapped[datetime] = _created()
    finished_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
