"""Offline sync, order numbers, tax per line, business days and cashier shifts.

Orders gain a per-store, per-business-day number, the business day (the client's
``occurred_at`` in the store's timezone), the till, shift and cashier they were taken by, and
whether they came through the offline sync (and arrived late). Lines carry their tax and the
catalog price when a synced price differed from it. The store replica gains its code and
timezone. Shifts, the number counters and the tills' sync batches are new.

Revision ID: 0005_orders_offline_core
Revises: 0004_outbox_delivery_tracking
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005_orders_offline_core"
down_revision: str | None = "0004_outbox_delivery_tracking"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UUID = postgresql.UUID(as_uuid=True)
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("stores", sa.Column("code", sa.Text(), nullable=True))
    op.add_column("stores", sa.Column("timezone", sa.Text(), nullable=True))

    op.add_column("orders", sa.Column("number", sa.Text(), nullable=True))
    op.add_column("orders", sa.Column("business_day", sa.Date(), nullable=True))
    op.add_column("orders", sa.Column("till_id", sa.Text(), nullable=True))
    op.add_column("orders", sa.Column("shift_id", UUID, nullable=True))
    op.add_column("orders", sa.Column("cashier_id", UUID, nullable=True))
    op.add_column("orders", sa.Column("source", sa.Text(), nullable=False, server_default="online"))
    op.add_column("orders", sa.Column("synced_at", TS, nullable=True))
    op.add_column(
        "orders", sa.Column("late", sa.Boolean(), nullable=False, server_default=sa.false())
    )
    op.add_column(
        "orders", sa.Column("tax_total", sa.BigInteger(), nullable=False, server_default="0")
    )
    # Orders taken before business days existed: the day in China Standard Time, the only
    # timezone stores had then.
    op.execute("UPDATE orders SET business_day = (occurred_at AT TIME ZONE 'Asia/Shanghai')::date")
    op.alter_column("orders", "business_day", nullable=False)
    op.create_index(
        "uq_orders_number", "orders", ["merchant_id", "store_id", "number"], unique=True
    )
    op.create_index("ix_orders_number", "orders", ["merchant_id", "number"])
    op.create_index("ix_orders_business_day", "orders", ["merchant_id", "store_id", "business_day"])
    op.create_index("ix_orders_shift", "orders", ["merchant_id", "shift_id"])

    op.add_column("order_lines", sa.Column("tax_rate_bps", sa.Integer(), nullable=True))
    op.add_column(
        "order_lines", sa.Column("tax", sa.BigInteger(), nullable=False, server_default="0")
    )
    op.add_column("order_lines", sa.Column("catalog_unit_price", sa.BigInteger(), nullable=True))
    op.add_column(
        "order_lines",
        sa.Column("price_mismatch", sa.Boolean(), nullable=False, server_default=sa.false()),
    )

    op.add_column("order_tenders", sa.Column("shift_id", UUID, nullable=True))
    op.add_column("order_tenders", sa.Column("occurred_at", TS, nullable=True))
    op.create_index("ix_order_tenders_shift", "order_tenders", ["merchant_id", "shift_id"])
    op.add_column("order_refunds", sa.Column("shift_id", UUID, nullable=True))
    op.add_column("order_refunds", sa.Column("occurred_at", TS, nullable=True))
    op.create_index("ix_order_refunds_shift", "order_refunds", ["merchant_id", "shift_id"])

    op.create_table(
        "order_number_counters",
        sa.Column("merchant_id", UUID, primary_key=True),
        sa.Column("store_id", UUID, primary_key=True),
        sa.Column("business_day", sa.Date(), primary_key=True),
        sa.Column("last", sa.Integer(), nullable=False),
    )

    op.create_table(
        "shifts",
        sa.Column("merchant_id", UUID, primary_key=True),
        sa.Column("id", UUID, primary_key=True),
        sa.Column("store_id", UUID, nullable=False),
        sa.Column("till_id", sa.Text(), nullable=False),
        sa.Column("cashier_id", UUID, nullable=True),
        sa.Column("business_day", sa.Date(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("opening_float", sa.BigInteger(), nullable=False),
        sa.Column("opened_at", TS, nullable=False),
        sa.Column("closed_at", TS, nullable=True),
        sa.Column("counted", postgresql.JSONB(), nullable=True),
        sa.Column("request_hash", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False, server_default="1"),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("opening_float >= 0", name="ck_shifts_float_not_negative"),
    )
    op.create_index("ix_shifts_till", "shifts", ["merchant_id", "store_id", "till_id", "opened_at"])
    # One open shift per till: a second open would split the drawer's cash between two counts.
    op.create_index(
        "uq_shifts_open_till",
        "shifts",
        ["merchant_id", "store_id", "till_id"],
        unique=True,
        postgresql_where=sa.text("status = 'open'"),
    )

    op.create_table(
        "sync_batches",
        sa.Column("id", UUID, primary_key=True),
        sa.Column("merchant_id", UUID, nullable=False),
        sa.Column("store_id", UUID, nullable=False),
        sa.Column("till_id", sa.Text(), nullable=False),
        sa.Column("received_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("created", sa.Integer(), nullable=False),
        sa.Column("already_synced", sa.Integer(), nullable=False),
        sa.Column("rejected", sa.Integer(), nullable=False),
    )
    op.create_index(
        "ix_sync_batches_till",
        "sync_batches",
        ["merchant_id", "store_id", "till_id", "received_at"],
    )


def downgrade() -> None:
    op.drop_table("sync_batches")
    op.drop_table("shifts")
    op.drop_table("order_number_counters")
    op.drop_index("ix_order_refunds_shift", "order_refunds")
    op.drop_column("order_refunds", "occurred_at")
    op.drop_column("order_refunds", "shift_id")
    op.drop_index("ix_order_tenders_shift", "order_tenders")
    op.drop_column("order_tenders", "occurred_at")
    op.drop_column("order_tenders", "shift_id")
    for column in ("price_mismatch", "catalog_unit_price", "tax", "tax_rate_bps"):
        op.drop_column("order_lines", column)
    for index in (
        "ix_orders_shift",
        "ix_orders_business_day",
        "ix_orders_number",
        "uq_orders_number",
    ):
        op.drop_index(index, "orders")
    for column in (
        "tax_total",
        "late",
        "synced_at",
        "source",
        "cashier_id",
        "shift_id",
        "till_id",
        "business_day",
        "number",
    ):
        op.drop_column("orders", column)
    op.drop_column("stores", "timezone")
    op.drop_column("stores", "code")
