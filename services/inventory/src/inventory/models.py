"""Tables of the inventory service: the catalog (products and per-store prices), the stock
ledger (append-only movements plus one balance row per store and product) and the replica of
identity's stores.

Every table is keyed by merchant first: product ids are chosen by clients and are unique per
merchant only, so two merchants may hold the same product id without seeing each other."""

from __future__ import annotations

import uuid
from datetime import datetime

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
