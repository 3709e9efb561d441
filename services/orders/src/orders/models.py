"""Tables of the orders service: orders with their lines, tenders and refunds, and the local
replicas of inventory's catalog, identity's stores and members' member ids.

Every replica is keyed by ``(merchant_id, id)``: ids chosen elsewhere are unique per merchant
only, and one merchant's event must never touch another merchant's row."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from servicekit.schema import define_platform_tables


class Base(DeclarativeBase):
    metadata = sa.MetaData()


platform_tables = define_platform_tables(Base.metadata)

UUID = pg.UUID(as_uuid=True)
TS = sa.DateTime(timezone=True)


class CatalogProduct(Base):
    """Inventory's product as of ``version``, kept from ``inventory.product.*`` events.

    The HQ price has a version of its own (``price_version``): an HQ price change that arrives
    before the product's snapshot leaves a price-only row (``version`` 0, status ``unknown``)
    holding the price, so the older snapshot arriving later cannot put back a stale price."""

    __tablename__ = "catalog_products"
    __table_args__ = (sa.Index("ix_catalog_products_barcode", "merchant_id", "barcode"),)

    merchant_id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    product_id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    version: Mapped[int] = mapped_column(sa.Integer)
    price_version: Mapped[int] = mapped_column(sa.Integer, server_default="0")
    sku: Mapped[str] = mapped_column(sa.Text)
    barcode: Mapped[str | None] = mapped_column(sa.Text)
    name: Mapped[str] = mapped_column(sa.Text)
    category_id: Mapped[uuid.UUID | None] = mapped_column(UUID)
    unit: Mapped[str] = mapped_column(sa.Text)
    currency: Mapped[str] = mapped_column(sa.String(3))
    price: Mapped[int] = mapped_column(sa.BigInteger)
    tax_rate_bps: Mapped[int] = mapped_column(sa.Integer)
    is_tobacco: Mapped[bool] = mapped_column(sa.Boolean)
    status: Mapped[str] = mapped_column(sa.Text)
    kitchen_station: Mapped[str | None] = mapped_column(sa.Text)
    # Inventory's cost per single in ``currency`` as of ``version``; null while unknown.
    cost: Mapped[int | None] = mapped_column(sa.BigInteger)


class CatalogCost(Base):
    """A product's cost from each version of its snapshot, from when inventory announced it:
    an order synced late takes the cost that was in force when the till sold it."""

    __tablename__ = "catalog_costs"

    merchant_id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    product_id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    version: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    effective_at: Mapped[datetime] = mapped_column(TS)
    currency: Mapped[str] = mapped_column(sa.String(3))
    cost: Mapped[int | None] = mapped_column(sa.BigInteger)


class CatalogStorePrice(Base):
    """A store's own price of a product; a null price (removed) is kept for its version."""

    __tablename__ = "catalog_store_prices"

    merchant_id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    product_id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    store_id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    version: Mapped[int] = mapped_column(sa.Integer)
    currency: Mapped[str | None] = mapped_column(sa.String(3))
    price: Mapped[int | None] = mapped_column(sa.BigInteger)


class Store(Base):
    """Identity's store status as of ``version``: orders takes orders only for stores it knows
    and refuses writes to a locked one."""

    __tablename__ = "stores"

    merchant_id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    store_id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    status: Mapped[str] = mapped_column(sa.Text)
    version: Mapped[int] = mapped_column(sa.Integer)
    # Unknown until a created/updated event brings them (a status change carries neither).
    code: Mapped[str | None] = mapped_column(sa.Text)
    timezone: Mapped[str | None] = mapped_column(sa.Text)


class Member(Base):
    """A member id that members announced (``members.member.created``): an order may name only
    a member that exists, or the points it earns would have nowhere to go."""

    __tablename__ = "members"

    merchant_id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    member_id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    level: Mapped[str | None] = mapped_column(sa.Text)
    recorded_at: Mapped[datetime] = mapped_column(TS, server_default=sa.func.now())
    # The highest ``members.member.updated`` version applied; 0 while only created is known.
    version: Mapped[int] = mapped_column(sa.Integer, server_default="0")


class Order(Base):
    """An order; ``id`` is the client's, unique per merchant. Amounts are minor units of
    ``currency``.

    ``business_day`` is the day of ``occurred_at`` in the store's timezone and ``number`` the
    server's short number within the store and that day. ``source`` is ``offline`` for orders
    that came through the batch sync; ``late`` marks those that arrived after their business
    day had ended or their shift had closed."""

    __tablename__ = "orders"
    __table_args__ = (
        sa.Index("ix_orders_listing", "merchant_id", "created_at", "id"),
        sa.Index("uq_orders_number", "merchant_id", "store_id", "number", unique=True),
        sa.Index("ix_orders_number", "merchant_id", "number"),
        sa.Index("ix_orders_business_day", "merchant_id", "store_id", "business_day"),
        sa.Index("ix_orders_shift", "merchant_id", "shift_id"),
    )

    merchant_id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    store_id: Mapped[uuid.UUID] = mapped_column(UUID)
    channel: Mapped[str] = mapped_column(sa.Text)
    member_id: Mapped[uuid.UUID | None] = mapped_column(UUID)
    table_label: Mapped[str | None] = mapped_column(sa.Text)
    people_count: Mapped[int | None] = mapped_column(sa.Integer)
    status: Mapped[str] = mapped_column(sa.Text)
    currency: Mapped[str] = mapped_column(sa.String(3))
    subtotal: Mapped[int] = mapped_column(sa.BigInteger)
    discount_total: Mapped[int] = mapped_column(sa.BigInteger)
    total: Mapped[int] = mapped_column(sa.BigInteger)
    paid_total: Mapped[int] = mapped_column(sa.BigInteger, server_default="0")
    refunded_total: Mapped[int] = mapped_column(sa.BigInteger, server_default="0")
    # A digest of the create request: a resend must match it, or the id was reused.
    request_hash: Mapped[str] = mapped_column(sa.Text)
    cancel_reason: Mapped[str | None] = mapped_column(sa.Text)
    occurred_at: Mapped[datetime] = mapped_column(TS)
    placed_at: Mapped[datetime | None] = mapped_column(TS)
    paid_at: Mapped[datetime | None] = mapped_column(TS)
    completed_at: Mapped[datetime | None] = mapped_column(TS)
    cancelled_at: Mapped[datetime | None] = mapped_column(TS)
    version: Mapped[int] = mapped_column(sa.Integer, server_default="1")
    created_at: Mapped[datetime] = mapped_column(TS, server_default=sa.func.now())
    updated_at: Mapped[datetime] = mapped_column(TS, server_default=sa.func.now())
    number: Mapped[str | None] = mapped_column(sa.Text)
    business_day: Mapped[date] = mapped_column(sa.Date)
    till_id: Mapped[str | None] = mapped_column(sa.Text)
    shift_id: Mapped[uuid.UUID | None] = mapped_column(UUID)
    cashier_id: Mapped[uuid.UUID | None] = mapped_column(UUID)
    source: Mapped[str] = mapped_column(sa.Text, server_default="online")
    synced_at: Mapped[datetime | None] = mapped_column(TS)
    late: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.false())
    tax_total: Mapped[int] = mapped_column(sa.BigInteger, server_default="0")
    # What the pricing engine was given (see ``orders.promotions.pricing``): recomputing from it
    # gives back the stored discounts. Null for orders priced before promotions, and synced
    # orders (the till priced those).
    pricing: Mapped[dict[str, Any] | None] = mapped_column(pg.JSONB(none_as_null=True))


class OrderLine(Base):
    """A line as sold: name, unit price and station captured at the time of sale."""

    __tablename__ = "order_lines"
    __table_args__ = (sa.Index("ix_order_lines_order", "merchant_id", "order_id", "position"),)

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    merchant_id: Mapped[uuid.UUID] = mapped_column(UUID)
    order_id: Mapped[uuid.UUID] = mapped_column(UUID)
    position: Mapped[int] = mapped_column(sa.Integer)
    product_id: Mapped[uuid.UUID] = mapped_column(UUID)
    name: Mapped[str] = mapped_column(sa.Text)
    quantity: Mapped[int] = mapped_column(sa.Integer)
    unit_price: Mapped[int] = mapped_column(sa.BigInteger)
    discount: Mapped[int] = mapped_column(sa.BigInteger)
    total: Mapped[int] = mapped_column(sa.BigInteger)
    price_overridden: Mapped[bool] = mapped_column(sa.Boolean)
    kitchen_station: Mapped[str | None] = mapped_column(sa.Text)
    notes: Mapped[str | None] = mapped_column(sa.Text)
    modifiers: Mapped[list[str]] = mapped_column(pg.JSONB)
    # Tax included in ``total`` at the product's rate (see ``orders.order.tax``).
    tax_rate_bps: Mapped[int | None] = mapped_column(sa.Integer)
    tax: Mapped[int] = mapped_column(sa.BigInteger, server_default="0")
    # The catalog's price when a till charged another one offline; flagged, never corrected.
    catalog_unit_price: Mapped[int | None] = mapped_column(sa.BigInteger)
    price_mismatch: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.false())
    # Which promotion, coupon or manual discount gave what of ``discount``.
    adjustments: Mapped[list[dict[str, Any]]] = mapped_column(
        pg.JSONB, server_default=sa.text("'[]'::jsonb")
    )
    # The product's cost per single when it was sold, frozen so that a later cost leaves the
    # margin of past sales alone; null when the cost was not known.
    unit_cost: Mapped[int | None] = mapped_column(sa.BigInteger)


class Tender(Base):
    """A succeeded payment towards an order (one row per payment id)."""

    __tablename__ = "order_tenders"
    __table_args__ = (
        sa.Index("ix_order_tenders_order", "merchant_id", "order_id"),
        sa.Index("ix_order_tenders_shift", "merchant_id", "shift_id"),
    )

    merchant_id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    payment_id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    order_id: Mapped[uuid.UUID] = mapped_column(UUID)
    method: Mapped[str] = mapped_column(sa.Text)
    currency: Mapped[str] = mapped_column(sa.String(3))
    amount: Mapped[int] = mapped_column(sa.BigInteger)
    recorded_at: Mapped[datetime] = mapped_column(TS, server_default=sa.func.now())
    # The shift whose drawer holds the money: the order's shift.
    shift_id: Mapped[uuid.UUID | None] = mapped_column(UUID)
    # When the till took it (offline tenders); null for tenders recorded online.
    occurred_at: Mapped[datetime | None] = mapped_column(TS)


class Refund(Base):
    """Money returned for an order (one row per refund id).

    ``requested_returned_lines`` are the goods payments said came back; ``returned_lines`` are
    the ones orders accepted (products on the order, at most sold minus already returned),
    decided when the refund is announced. A refund recorded before its order was paid (events
    out of order) waits with ``announced_at`` null until the order is paid."""

    __tablename__ = "order_refunds"
    __table_args__ = (
        sa.Index("ix_order_refunds_order", "merchant_id", "order_id"),
        sa.Index("ix_order_refunds_shift", "merchant_id", "shift_id"),
    )

    merchant_id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    refund_id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    order_id: Mapped[uuid.UUID] = mapped_column(UUID)
    payment_id: Mapped[uuid.UUID] = mapped_column(UUID)
    method: Mapped[str] = mapped_column(sa.Text)
    currency: Mapped[str] = mapped_column(sa.String(3))
    amount: Mapped[int] = mapped_column(sa.BigInteger)
    requested_returned_lines: Mapped[list[dict[str, Any]]] = mapped_column(
        pg.JSONB, server_default=sa.text("'[]'::jsonb")
    )
    returned_lines: Mapped[list[dict[str, Any]]] = mapped_column(pg.JSONB)
    announced_at: Mapped[datetime | None] = mapped_column(TS)
    recorded_at: Mapped[datetime] = mapped_column(TS, server_default=sa.func.now())
    # The shift whose drawer paid it out: the till's shift at the time, else the order's.
    shift_id: Mapped[uuid.UUID | None] = mapped_column(UUID)
    occurred_at: Mapped[datetime | None] = mapped_column(TS)


def refund_of_a_tender() -> sa.ColumnElement[bool]:
    """A refund of a payment the order counted. Payments gives back by itself money it took
    for a payment that failed (a capture after the order was cancelled, or after the payment
    timed out) and announces that refund too; such a payment was never a tender, so its refund
    is shown on the order but neither counts in ``refunded_total`` nor refunds the order
    (payments' figures leave both out as well). A refund that arrives before its payment's
    success waits, like one of an order not paid yet."""
    return sa.exists().where(
        Tender.merchant_id == Refund.merchant_id, Tender.payment_id == Refund.payment_id
    )


class PaymentFailure(Base):
    """A payment attempt that failed; kept for the order's history, changes nothing else."""

    __tablename__ = "order_payment_failures"

    merchant_id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    payment_id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    order_id: Mapped[uuid.UUID] = mapped_column(UUID)
    method: Mapped[str] = mapped_column(sa.Text)
    currency: Mapped[str] = mapped_column(sa.String(3))
    amount: Mapped[int] = mapped_column(sa.BigInteger)
    reason: Mapped[str] = mapped_column(sa.Text)
    recorded_at: Mapped[datetime] = mapped_column(TS, server_default=sa.func.now())


class OrderNumberCounter(Base):
    """The last number given in a store on a business day; taken in the order's transaction,
    so a rolled-back order gives its number back and numbers have no gaps."""

    __tablename__ = "order_number_counters"

    merchant_id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    store_id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    business_day: Mapped[date] = mapped_column(sa.Date, primary_key=True)
    last: Mapped[int] = mapped_column(sa.Integer)


class Shift(Base):
    """A cashier's shift on a till: opened with a cash float, closed with the counted amounts
    per method (``counted``: ``{method: minor units}``). Its id may come from the till, so a
    shift opened offline is synced like an order."""

    __tablename__ = "shifts"
    __table_args__ = (
        sa.Index("ix_shifts_till", "merchant_id", "store_id", "till_id", "opened_at"),
        sa.Index(
            "uq_shifts_open_till",
            "merchant_id",
            "store_id",
            "till_id",
            unique=True,
            postgresql_where=sa.text("status = 'open'"),
        ),
    )

    merchant_id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    store_id: Mapped[uuid.UUID] = mapped_column(UUID)
    till_id: Mapped[str] = mapped_column(sa.Text)
    cashier_id: Mapped[uuid.UUID | None] = mapped_column(UUID)
    business_day: Mapped[date] = mapped_column(sa.Date)
    status: Mapped[str] = mapped_column(sa.Text)
    currency: Mapped[str] = mapped_column(sa.String(3))
    opening_float: Mapped[int] = mapped_column(sa.BigInteger)
    opened_at: Mapped[datetime] = mapped_column(TS)
    closed_at: Mapped[datetime | None] = mapped_column(TS)
    counted: Mapped[dict[str, int] | None] = mapped_column(pg.JSONB)
    request_hash: Mapped[str] = mapped_column(sa.Text)
    version: Mapped[int] = mapped_column(sa.Integer, server_default="1")
    created_at: Mapped[datetime] = mapped_column(TS, server_default=sa.func.now())


class SyncBatch(Base):
    """One batch a till sent through the offline sync, with how its orders fared."""

    __tablename__ = "sync_batches"
    __table_args__ = (
        sa.Index("ix_sync_batches_till", "merchant_id", "store_id", "till_id", "received_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    merchant_id: Mapped[uuid.UUID] = mapped_column(UUID)
    store_id: Mapped[uuid.UUID] = mapped_column(UUID)
    till_id: Mapped[str] = mapped_column(sa.Text)
    received_at: Mapped[datetime] = mapped_column(TS, server_default=sa.func.now())
    created: Mapped[int] = mapped_column(sa.Integer)
    already_synced: Mapped[int] = mapped_column(sa.Integer)
    rejected: Mapped[int] = mapped_column(sa.Integer)


class Promotion(Base):
    """A promotion's head: its current version and where it applies. ``store_ids`` null is
    every store (only HQ may make such a promotion)."""

    __tablename__ = "promotions"
    __table_args__ = (sa.Index("ix_promotions_listing", "merchant_id", "created_at", "id"),)

    merchant_id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    version: Mapped[int] = mapped_column(sa.Integer)
    version_id: Mapped[uuid.UUID] = mapped_column(UUID)
    kind: Mapped[str] = mapped_column(sa.Text)
    active: Mapped[bool] = mapped_column(sa.Boolean)
    store_ids: Mapped[list[str] | None] = mapped_column(pg.JSONB(none_as_null=True))
    created_at: Mapped[datetime] = mapped_column(TS, server_default=sa.func.now())
    updated_at: Mapped[datetime] = mapped_column(TS, server_default=sa.func.now())


class PromotionVersion(Base):
    """One version of a promotion's definition, never changed: orders name the versions that
    priced them."""

    __tablename__ = "promotion_versions"
    __table_args__ = (
        sa.Index("uq_promotion_versions", "merchant_id", "promotion_id", "version", unique=True),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    merchant_id: Mapped[uuid.UUID] = mapped_column(UUID)
    promotion_id: Mapped[uuid.UUID] = mapped_column(UUID)
    version: Mapped[int] = mapped_column(sa.Integer)
    definition: Mapped[dict[str, Any]] = mapped_column(pg.JSONB)
    created_by: Mapped[uuid.UUID | None] = mapped_column(UUID)
    created_at: Mapped[datetime] = mapped_column(TS, server_default=sa.func.now())


class Coupon(Base):
    """A member's coupon as members issued it (``terms``: the ``members.coupon.issued``
    payload), and where its redemption stands here: ``available``, ``reserved`` by
    ``order_id``, or ``redeemed``. ``sequence`` counts the redemption's steps, announced with
    each ``orders.coupon.*`` event. A void that arrives before the issue leaves a row without
    terms, so the late issue cannot make the coupon usable."""

    __tablename__ = "coupons"
    __table_args__ = (sa.Index("ix_coupons_order", "merchant_id", "order_id"),)

    merchant_id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    coupon_id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    member_id: Mapped[uuid.UUID] = mapped_column(UUID)
    terms: Mapped[dict[str, Any] | None] = mapped_column(pg.JSONB(none_as_null=True))
    status: Mapped[str] = mapped_column(sa.Text, server_default="available")
    order_id: Mapped[uuid.UUID | None] = mapped_column(UUID)
    store_id: Mapped[uuid.UUID | None] = mapped_column(UUID)
    currency: Mapped[str | None] = mapped_column(sa.String(3))
    discount: Mapped[int | None] = mapped_column(sa.BigInteger)
    sequence: Mapped[int] = mapped_column(sa.Integer, server_default="0")
    voided_at: Mapped[datetime | None] = mapped_column(TS)
    void_reason: Mapped[str | None] = mapped_column(sa.Text)
    updated_at: Mapped[datetime] = mapped_column(TS, server_default=sa.func.now())
