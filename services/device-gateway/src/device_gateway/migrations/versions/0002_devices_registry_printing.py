"""Device registry and binding audit, device commands, print jobs, device alerts, the kitchen
display feed and the store replica.

Revision ID: 0002_devices_registry_printing
Revises: 0001
Create Date: 2026-11-26 13:23:46.663777
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002_devices_registry_printing"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "device_alerts",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("merchant_id", sa.UUID(), nullable=False),
        sa.Column("store_id", sa.UUID(), nullable=False),
        sa.Column("device_id", sa.UUID(), nullable=True),
        sa.Column("print_job_id", sa.UUID(), nullable=True),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column(
            "raised_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_device_alerts_store",
        "device_alerts",
        ["merchant_id", "store_id", "raised_at"],
        unique=False,
    )
    op.create_index(
        "uq_device_alerts_open",
        "device_alerts",
        ["device_id", "kind"],
        unique=True,
        postgresql_where=sa.text("resolved_at IS NULL AND device_id IS NOT NULL"),
    )
    op.create_table(
        "device_bindings",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("device_id", sa.UUID(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("merchant_id", sa.UUID(), nullable=True),
        sa.Column("store_id", sa.UUID(), nullable=True),
        sa.Column("previous_merchant_id", sa.UUID(), nullable=True),
        sa.Column("previous_store_id", sa.UUID(), nullable=True),
        sa.Column("actor", sa.UUID(), nullable=True),
        sa.Column(
            "at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_device_bindings_device", "device_bindings", ["device_id", "at"], unique=False
    )
    op.create_table(
        "device_commands",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("device_id", sa.UUID(), nullable=False),
        sa.Column("merchant_id", sa.UUID(), nullable=False),
        sa.Column("store_id", sa.UUID(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("state", sa.Text(), server_default="queued", nullable=False),
        sa.Column("print_job_id", sa.UUID(), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("result", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_device_commands_pending",
        "device_commands",
        ["device_id", "state", "created_at"],
        unique=False,
    )
    op.create_table(
        "devices",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("sn", sa.Text(), nullable=False),
        sa.Column("mac", sa.Text(), nullable=True),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("model", sa.Text(), nullable=True),
        sa.Column("firmware", sa.Text(), nullable=True),
        sa.Column("connection", sa.Text(), nullable=False),
        sa.Column("host", sa.Text(), nullable=True),
        sa.Column("port", sa.Integer(), nullable=True),
        sa.Column("paper_width_mm", sa.SmallInteger(), server_default="80", nullable=False),
        sa.Column("merchant_id", sa.UUID(), nullable=True),
        sa.Column("store_id", sa.UUID(), nullable=True),
        sa.Column("station", sa.Text(), nullable=True),
        sa.Column("priority", sa.SmallInteger(), server_default="0", nullable=False),
        sa.Column("activation_code_hash", sa.Text(), nullable=True),
        sa.Column("mqtt_password_hash", sa.Text(), nullable=True),
        sa.Column("online", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status_changed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "state", postgresql.JSONB(astext_type=sa.Text()), server_default="{}", nullable=False
        ),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.Column("bound_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("(merchant_id IS NULL) = (store_id IS NULL)", name="ck_devices_binding"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("sn"),
    )
    op.create_index(
        "ix_devices_store", "devices", ["merchant_id", "store_id", "type"], unique=False
    )
    op.create_table(
        "kds_feed",
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("merchant_id", sa.UUID(), nullable=False),
        sa.Column("store_id", sa.UUID(), nullable=False),
        sa.Column("station", sa.Text(), nullable=False),
        sa.Column("ticket_id", sa.UUID(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("data", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_index(
        "ix_kds_feed_station",
        "kds_feed",
        ["merchant_id", "store_id", "station", "seq"],
        unique=False,
    )
    op.create_table(
        "kds_tickets",
        sa.Column("merchant_id", sa.UUID(), nullable=False),
        sa.Column("ticket_id", sa.UUID(), nullable=False),
        sa.Column("store_id", sa.UUID(), nullable=False),
        sa.Column("order_id", sa.UUID(), nullable=False),
        sa.Column("station", sa.Text(), nullable=False),
        sa.Column("table", sa.Text(), nullable=True),
        sa.Column("lines", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("state", sa.Text(), server_default="new", nullable=False),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
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
        sa.PrimaryKeyConstraint("merchant_id", "ticket_id"),
    )
    op.create_index(
        "ix_kds_tickets_station",
        "kds_tickets",
        ["merchant_id", "store_id", "station"],
        unique=False,
    )
    op.create_table(
        "print_jobs",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("merchant_id", sa.UUID(), nullable=False),
        sa.Column("store_id", sa.UUID(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("source_id", sa.UUID(), nullable=False),
        sa.Column("station", sa.Text(), server_default="", nullable=False),
        sa.Column("printer_type", sa.Text(), nullable=False),
        sa.Column("document", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("state", sa.Text(), server_default="queued", nullable=False),
        sa.Column("device_id", sa.UUID(), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "next_attempt_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("reprint_of", sa.UUID(), nullable=True),
        sa.Column("event_occurred_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("printed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "merchant_id", "source", "source_id", "station", name="uq_print_source"
        ),
    )
    op.create_index("ix_print_jobs_due", "print_jobs", ["state", "next_attempt_at"], unique=False)
    op.create_index(
        "ix_print_jobs_store", "print_jobs", ["merchant_id", "store_id", "created_at"], unique=False
    )
    op.create_table(
        "stores",
        sa.Column("store_id", sa.UUID(), nullable=False),
        sa.Column("merchant_id", sa.UUID(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("store_id"),
    )


def downgrade() -> None:
    op.drop_table("stores")
    op.drop_index("ix_print_jobs_store", table_name="print_jobs")
    op.drop_index("ix_print_jobs_due", table_name="print_jobs")
    op.drop_table("print_jobs")
    op.drop_index("ix_kds_tickets_station", table_name="kds_tickets")
    op.drop_table("kds_tickets")
    op.drop_index("ix_kds_feed_station", table_name="kds_feed")
    op.drop_table("kds_feed")
    op.drop_index("ix_devices_store", table_name="devices")
    op.drop_table("devices")
    op.drop_index("ix_device_commands_pending", table_name="device_commands")
    op.drop_table("device_commands")
    op.drop_index("ix_device_bindings_device", table_name="device_bindings")
    op.drop_table("device_bindings")
    op.drop_index(
        "uq_device_alerts_open",
        table_name="device_alerts",
        postgresql_where=sa.text("resolved_at IS NULL AND device_id IS NOT NULL"),
    )
    op.drop_index("ix_device_alerts_store", table_name="device_alerts")
    op.drop_table("device_alerts")
