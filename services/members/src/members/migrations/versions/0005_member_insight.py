"""Visit facts for member analysis, member import jobs with their per-row results, and
opening points carried over by an import in the points ledger.

Revision ID: 0005_member_insight
Revises: 0004_outbox_delivery_tracking
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision: str = "0005_member_insight"
down_revision: str | None = "0004_outbox_delivery_tracking"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _now() -> sa.TextClause:
    return sa.text("now()")


def upgrade() -> None:
    op.create_table(
        "member_visits",
        sa.Column("merchant_id", sa.UUID(), nullable=False),
        sa.Column("order_id", sa.UUID(), nullable=False),
        sa.Column("member_id", sa.UUID(), nullable=False),
        sa.Column("store_id", sa.UUID(), nullable=False),
        sa.Column("business_day", sa.Date(), nullable=True),
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("total", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("lines", pg.JSONB(), nullable=False, server_default=sa.text("'[]'::jsonb")),
        sa.Column("refunded_total", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("fully_refunded", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.PrimaryKeyConstraint("merchant_id", "order_id"),
    )
    op.create_index(
        "ix_member_visits_member_day",
        "member_visits",
        ["merchant_id", "member_id", "business_day"],
    )
    op.create_index(
        "ix_member_visits_day_store", "member_visits", ["merchant_id", "business_day", "store_id"]
    )

    op.create_table(
        "member_imports",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("merchant_id", sa.UUID(), nullable=False),
        sa.Column("file_sha256", sa.String(64), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("rows", pg.JSONB(), nullable=False),
        sa.Column("total_rows", sa.Integer(), nullable=False),
        sa.Column("processed_rows", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("counts", pg.JSONB(), nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("created_by", sa.UUID(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("merchant_id", "file_sha256", name="uq_member_imports_file"),
        sa.CheckConstraint("status IN ('running', 'completed')", name="ck_member_imports_status"),
    )
    op.create_index(
        "ix_member_imports_running",
        "member_imports",
        ["created_at"],
        postgresql_where=sa.text("status = 'running'"),
    )

    op.create_table(
        "member_import_rows",
        sa.Column("import_id", sa.UUID(), sa.ForeignKey("member_imports.id"), nullable=False),
        sa.Column("row", sa.Integer(), nullable=False),
        sa.Column("merchant_id", sa.UUID(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("phone", sa.Text(), nullable=True),
        sa.Column("member_id", sa.UUID(), nullable=True),
        sa.Column("code", sa.Text(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("changed", pg.ARRAY(sa.Text()), nullable=False, server_default="{}"),
        sa.PrimaryKeyConstraint("import_id", "row"),
    )

    for column, kind in (
        ("order_id", sa.UUID()),
        ("event_id", sa.UUID()),
        ("currency", sa.String(3)),
    ):
        op.alter_column("points_ledger", column, existing_type=kind, nullable=True)
    op.drop_constraint("ck_points_ledger_kind", "points_ledger", type_="check")
    op.create_check_constraint(
        "ck_points_ledger_kind", "points_ledger", "kind IN ('award', 'reversal', 'import')"
    )
    op.create_index(
        "uq_points_ledger_import",
        "points_ledger",
        ["member_id"],
        unique=True,
        postgresql_where=sa.text("kind = 'import'"),
    )


def downgrade() -> None:
    op.drop_index("uq_points_ledger_import", table_name="points_ledger")
    op.execute("DELETE FROM points_ledger WHERE kind = 'import'")
    op.drop_constraint("ck_points_ledger_kind", "points_ledger", type_="check")
    op.create_check_constraint(
        "ck_points_ledger_kind", "points_ledger", "kind IN ('award', 'reversal')"
    )
    for column, kind in (
        ("order_id", sa.UUID()),
        ("event_id", sa.UUID()),
        ("currency", sa.String(3)),
    ):
        op.alter_column("points_ledger", column, existing_type=kind, nullable=False)
    op.drop_table("member_import_rows")
    op.drop_index("ix_member_imports_running", table_name="member_imports")
    op.drop_table("member_imports")
    op.drop_index("ix_member_visits_day_store", table_name="member_visits")
    op.drop_index("ix_member_visits_member_day", table_name="member_visits")
    op.drop_table("member_visits")
