"""The tables every service carries next to its own: outbox, inbox and idempotency keys.

Each service owns its database, so each gets its own copy of these tables through its
migrations (``create_platform_tables`` in the first revision). The outbox columns follow
Debezium's outbox event router (id, aggregatetype, aggregateid, type, payload) so a CDC
connector can replace the relay without a schema change.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

#: Lanes partition the outbox by aggregate id; a relay publishes a lane only while holding its
#: advisory lock, which keeps per-aggregate order with several relays running.
OUTBOX_LANES = 64
#: Advisory-lock namespace of the outbox lanes (first key of the two-key advisory lock).
OUTBOX_LOCK_NAMESPACE = 0x0B0C
OUTBOX_CHANNEL = "outbox_event"


def define_platform_tables(metadata: sa.MetaData) -> dict[str, sa.Table]:
    """Add the platform tables to a service's metadata and return them by name."""
    outbox = sa.Table(
        "outbox",
        metadata,
        sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("seq", sa.BigInteger, sa.Identity(always=True), nullable=False, unique=True),
        sa.Column("aggregatetype", sa.Text, nullable=False),
        sa.Column("aggregateid", sa.Text, nullable=False),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("payload", pg.JSONB, nullable=False),
        sa.Column("headers", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column(
            "lane",
            sa.SmallInteger,
            sa.Computed(f"(hashtext(aggregateid) & {OUTBOX_LANES - 1})", persisted=True),
            nullable=False,
        ),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("sent_at", sa.DateTime(timezone=True)),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text),
        # Where the broker acknowledged the row (set with sent_at): the log auditor compares
        # them with the broker's log to notice a log that lost what it acknowledged.
        sa.Column("kafka_partition", sa.Integer),
        sa.Column("kafka_offset", sa.BigInteger),
        # A row that kept failing on its own is parked: the relay skips it, its lane moves on.
        sa.Column("parked_at", sa.DateTime(timezone=True)),
        sa.Index("ix_outbox_unsent", "lane", "seq", postgresql_where=sa.text("sent_at IS NULL")),
        sa.Index("ix_outbox_sent_at", "sent_at", postgresql_where=sa.text("sent_at IS NOT NULL")),
        sa.Index(
            "ix_outbox_delivered",
            "topic",
            "kafka_partition",
            "kafka_offset",
            postgresql_where=sa.text("kafka_offset IS NOT NULL"),
        ),
        sa.Index(
            "ix_outbox_parked", "parked_at", postgresql_where=sa.text("parked_at IS NOT NULL")
        ),
    )
    inbox = sa.Table(
        "inbox",
        metadata,
        sa.Column("consumer", sa.Text, primary_key=True),
        sa.Column("event_id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("event_type", sa.Text, nullable=False),
        sa.Column(
            "processed_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.now(),
        ),
    )
    idempotency = sa.Table(
        "idempotency_keys",
        metadata,
        # The scope keeps two tenants (or two principals) from colliding on the same key.
        sa.Column("scope", sa.Text, primary_key=True),
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("method", sa.Text, nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("request_hash", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("response_status", sa.Integer),
        sa.Column("response_headers", pg.JSONB),
        sa.Column("response_body", sa.LargeBinary),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("locked_until", sa.DateTime(timezone=True)),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Index("ix_idempotency_expires_at", "expires_at"),
    )
    return {"outbox": outbox, "inbox": inbox, "idempotency_keys": idempotency}


_NOTIFY_FUNCTION = f"""
CREATE OR REPLACE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{OUTBOX_CHANNEL}', '');
    RETURN NULL;
END $$
"""
_NOTIFY_TRIGGER = """
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify()
"""


def install_platform_tables(bind: sa.Connection) -> None:
    """Create the platform tables and the outbox wake-up trigger on ``bind``."""
    metadata = sa.MetaData()
    tables = define_platform_tables(metadata)
    metadata.create_all(bind=bind, tables=list(tables.values()))
    # One notification per inserting statement (and PostgreSQL folds duplicates per
    # transaction), so a busy writer does not flood the relay.
    bind.exec_driver_sql(_NOTIFY_FUNCTION)
    bind.exec_driver_sql(_NOTIFY_TRIGGER)


def create_platform_tables(op: Any) -> None:
    """The first migration of every service (alembic ``op``)."""
    install_platform_tables(op.get_bind())


_DELIVERY_COLUMNS = (
    "ALTER TABLE outbox ADD COLUMN IF NOT EXISTS kafka_partition integer",
    "ALTER TABLE outbox ADD COLUMN IF NOT EXISTS kafka_offset bigint",
    "ALTER TABLE outbox ADD COLUMN IF NOT EXISTS parked_at timestamptz",
    "CREATE INDEX IF NOT EXISTS ix_outbox_delivered"
    " ON outbox (topic, kafka_partition, kafka_offset) WHERE kafka_offset IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS ix_outbox_parked ON outbox (parked_at) WHERE parked_at IS NOT NULL",
)


def add_outbox_delivery_columns(op: Any) -> None:
    """The outbox columns of delivery tracking and parking (a later migration of every
    service; a no-op on a database whose first migration already created them)."""
    for statement in _DELIVERY_COLUMNS:
        op.execute(statement)


def drop_outbox_delivery_columns(op: Any) -> None:
    op.execute("DROP INDEX IF EXISTS ix_outbox_parked")
    op.execute("DROP INDEX IF EXISTS ix_outbox_delivered")
    for column in ("parked_at", "kafka_offset", "kafka_partition"):
        op.execute(f"ALTER TABLE outbox DROP COLUMN IF EXISTS {column}")


def drop_platform_tables(op: Any) -> None:
    op.execute("DROP TRIGGER IF EXISTS outbox_notify ON outbox")
    op.execute("DROP FUNCTION IF EXISTS outbox_notify()")
    for name in ("idempotency_keys", "inbox", "outbox"):
        op.execute(f"DROP TABLE IF EXISTS {name}")
