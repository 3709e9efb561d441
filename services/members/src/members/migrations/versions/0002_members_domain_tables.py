"""Members domain tables: members, points rules and the points ledger.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 02:24:35.147253
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "members",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("merchant_id", sa.UUID(), nullable=False),
        sa.Column("phone", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("birthday", sa.Date(), nullable=True),
        sa.Column("tags", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("level", sa.Text(), nullable=True),
        sa.Column("points_balance", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("merchant_id", "phone", name="uq_members_merchant_phone"),
    )
    op.create_index(
        "ix_members_merchant_created", "members", ["merchant_id", "created_at", "id"], unique=False
    )
    op.create_table(
        "points_rules",
        sa.Column("merchant_id", sa.UUID(), nullable=False),
        sa.Column("points_per_unit", sa.Integer(), nullable=False),
        sa.Column("unit_amount", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("points_per_unit >= 0", name="ck_points_rules_points_per_unit"),
        sa.CheckConstraint("unit_amount > 0", name="ck_points_rules_unit_amount"),
        sa.PrimaryKeyConstraint("merchant_id"),
    )
    op.create_table(
        "points_ledger",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("merchant_id", sa.UUID(), nullable=False),
        sa.Column("member_id", sa.UUID(), nullable=False),
        sa.Column("order_id", sa.UUID(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("source_id", sa.UUID(), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("balance_after", sa.BigInteger(), nullable=False),
        sa.Column("base_amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("event_id", sa.UUID(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("kind IN ('award', 'reversal')", name="ck_points_ledger_kind"),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["members.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "member_id", "order_id", "kind", "source_id", name="uq_points_ledger_source"
        ),
    )
    op.create_index(
        op.f("ix_points_ledger_member_id"), "points_ledger", ["member_id"], unique=False
    )
    op.create_index(
        "uq_points_ledger_award",
        "points_ledger",
        ["member_id", "order_id"],
        unique=True,
        postgresql_where=sa.text("kind = 'award'"),
    )


def downgrade() -> None:
    op.drop_index(
        "uq_points_ledger_award",
        table_name="points_ledger",
        postgresql_where=sa.text("kind = 'award'"),
    )
    op.drop_index(op.f("ix_points_ledger_member_id"), table_name="points_ledger")
    op.drop_table("points_ledger")
    op.drop_table("points_rules")
    op.drop_index("ix_members_merchant_created", table_name="members")
    op.drop_table("members")
