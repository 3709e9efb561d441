"""Outbox delivery tracking: where the broker acknowledged each row, and parked rows.

Revision ID: 0003_outbox_delivery_tracking
Revises: 0002_devices_registry_printing
Create Date: 2026-11-26
"""

from collections.abc import Sequence

from alembic import op

from servicekit.schema import add_outbox_delivery_columns, drop_outbox_delivery_columns

revision: str = "0003_outbox_delivery_tracking"
down_revision: str | None = "0002_devices_registry_printing"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    add_outbox_delivery_columns(op)


def downgrade() -> None:
    drop_outbox_delivery_columns(op)
