"""The order's business day on the order replica, for payment lists and daily figures; an
index for listing a merchant's payments without an order id.

Revision ID: 0005_payments_business_day
Revises: 0004_outbox_delivery_tracking
Create Date: 2026-11-26 14:15:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_payments_business_day"
down_revision: str | None = "0004_outbox_delivery_tracking"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("order_replicas", sa.Column("business_day", sa.Date(), nullable=True))
    op.create_index(
        "ix_order_replicas_business_day",
        "order_replicas",
        ["merchant_id", "business_day", "store_id"],
    )
    op.create_index("ix_payments_listing", "payments", ["merchant_id", "created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_payments_listing", table_name="payments")
    op.drop_index("ix_order_replicas_business_day", table_name="order_replicas")
    op.drop_column("order_replicas", "business_day")
