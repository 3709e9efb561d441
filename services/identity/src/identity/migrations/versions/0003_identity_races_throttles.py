"""One open handover per merchant (a partial unique index), and sign-in throttles per phone
and per client address with growing delays instead of the fixed per-phone lockout.

Revision ID: 0003_identity_races_throttles
Revises: 0002
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_identity_races_throttles"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Races may already have opened two handovers for a merchant: keep the oldest open one.
    op.execute(
        """
        UPDATE handovers SET status = 'cancelled'
        WHERE status IN ('pending', 'accepted')
          AND id <> (
            SELECT h.id FROM handovers h
            WHERE h.merchant_id = handovers.merchant_id AND h.status IN ('pending', 'accepted')
            ORDER BY h.created_at, h.id LIMIT 1
          )
        """
    )
    op.create_index(
        "uq_handovers_one_open_per_merchant",
        "handovers",
        ["merchant_id"],
        unique=True,
        postgresql_where=sa.text("status IN ('pending', 'accepted')"),
    )
    op.create_table(
        "login_throttles",
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("blocked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_failure_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("kind", "key", name=op.f("pk_login_throttles")),
    )
    # Counters only: nothing worth carrying over from the fixed lockout.
    op.drop_table("login_throttle")


def downgrade() -> None:
    op.create_table(
        "login_throttle",
        sa.Column("phone", sa.String(length=16), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("phone", name=op.f("pk_login_throttle")),
    )
    op.drop_table("login_throttles")
    op.drop_index("uq_handovers_one_open_per_merchant", table_name="handovers")
