"""The cost of what was sold: the catalog replica keeps inventory's cost per product (and
each version's cost with the time it was announced), and every order line freezes the unit
cost known when it was sold, for the margin in the reports.

Revision ID: 0007_orders_line_cost
Revises: 0006_orders_promotions
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007_orders_line_cost"
down_revision: str | None = "0006_orders_promotions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UUID = postgresql.UUID(as_uuid=True)


def upgrade() -> None:
    op.add_column("catalog_products", sa.Column("cost", sa.BigInteger(), nullable=True))
    op.add_column("order_lines", sa.Column("unit_cost", sa.BigInteger(), nullable=True))
    op.create_table(
        "catalog_costs",
        sa.Column("merchant_id", UUID, primary_key=True),
        sa.Column("product_id", UUID, primary_key=True),
        sa.Column("version", sa.Integer(), primary_key=True),
        sa.Column("effective_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("cost", sa.BigInteger(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("catalog_costs")
    op.drop_column("order_lines", "unit_cost")
    op.drop_column("catalog_products", "cost")
