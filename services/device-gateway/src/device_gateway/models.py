"""Tables of the device-gateway service: the device registry and its audit trail, MQTT
commands, print jobs, device alerts, the kitchen display feed and the store replica."""

from __future__ import annotations

import uuid
from datetime import datetime
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
NOW = sa.text("now()")


class Store(Base):
    """Identity's store as of ``version``: whose it is and the name printed on receipts."""

    __tablename__ = "stores"

    store_id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    merchant_id: Mapped[uuid.UUID] = mapped_column(UUID)
    name: Mapped[str] = mapped_column(sa.Text)
    version: Mapped[int] = mapped_column(sa.Integer)


class Device(Base):
    """A device known by its serial number (globally unique), bound to at most one store.

    An unbound device has no merchant and no store; it may hold a pending activation code
    (hashed) that it showed on its screen."""

    __tablename__ = "devices"
    __table_args__ = (
        sa.Index("ix_devices_store", "merchant_id", "store_id", "type"),
        sa.CheckConstraint("(merchant_id IS NULL) = (store_id IS NULL)", name="ck_devices_binding"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    sn: Mapped[str] = mapped_column(sa.Text, unique=True)
    mac: Mapped[str | None] = mapped_column(sa.Text)
    type: Mapped[str] = mapped_column(sa.Text)
    model: Mapped[str | None] = mapped_column(sa.Text)
    firmware: Mapped[str | None] = mapped_column(sa.Text)
    connection: Mapped[str] = mapped_column(sa.Text)  # "mqtt" or "tcp"
    host: Mapped[str | None] = mapped_column(sa.Text)
    port: Mapped[int | None] = mapped_column(sa.Integer)
    paper_width_mm: Mapped[int] = mapped_column(sa.SmallInteger, server_default="80")
    merchant_id: Mapped[uuid.UUID | None] = mapped_column(UUID)
    store_id: Mapped[uuid.UUID | None] = mapped_column(UUID)
    station: Mapped[str | None] = mapped_column(sa.Text)
    # Lower prints first; the others of the same store, station and type are its backups.
    priority: Mapped[int] = mapped_column(sa.SmallInteger, server_default="0")
    activation_code_hash: Mapped[str | None] = mapped_column(sa.Text)
    mqtt_password_hash: Mapped[str | None] = mapped_column(sa.Text)
    online: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.false())
    last_seen_at: Mapped[datetime | None] = mapped_column(TS)
    status_changed_at: Mapped[datetime | None] = mapped_column(TS)
    state: Mapped[dict[str, Any]] = mapped_column(pg.JSONB, server_default="{}")
    version: Mapped[int] = mapped_column(sa.Integer, server_default="1")
    bound_at: Mapped[datetime | None] = mapped_column(TS)
    created_at: Mapped[datetime] = mapped_column(TS, server_default=NOW)


class DeviceBinding(Base):
    """The audit trail of bind, unbind and rebind: one row per step, written with it."""

    __tablename__ = "device_bindings"
    __table_args__ = (sa.Index("ix_device_bindings_device", "device_id", "at"),)

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    device_id: Mapped[uuid.UUID] = mapped_column(UUID)
    action: Mapped[str] = mapped_column(sa.Text)  # bound, unbound, rebound
    merchant_id: Mapped[uuid.UUID | None] = mapped_column(UUID)
    store_id: Mapped[uuid.UUID | None] = mapped_column(UUID)
    previous_merchant_id: Mapped[uuid.UUID | None] = mapped_column(UUID)
    previous_store_id: Mapped[uuid.UUID | None] = mapped_column(UUID)
    actor: Mapped[uuid.UUID | None] = mapped_column(UUID)
    at: Mapped[datetime] = mapped_column(TS, server_default=NOW)


class DeviceCommand(Base):
    """A command for an MQTT device, kept until the device acknowledges it."""

    __tablename__ = "device_commands"
    __table_args__ = (sa.Index("ix_device_commands_pending", "device_id", "state", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    device_id: Mapped[uuid.UUID] = mapped_column(UUID)
    merchant_id: Mapped[uuid.UUID] = mapped_column(UUID)
    store_id: Mapped[uuid.UUID] = mapped_column(UUID)
    kind: Mapped[str] = mapped_column(sa.Text)  # print, open_drawer, show_message, unbind
    payload: Mapped[dict[str, Any]] = mapped_column(pg.JSONB)
    state: Mapped[str] = mapped_column(sa.Text, server_default="queued")  # queued, sent, acked
    print_job_id: Mapped[uuid.UUID | None] = mapped_column(UUID)
    attempts: Mapped[int] = mapped_column(sa.Integer, server_default="0")
    result: Mapped[dict[str, Any] | None] = mapped_column(pg.JSONB)
    created_at: Mapped[datetime] = mapped_column(TS, server_default=NOW)
    sent_at: Mapped[datetime | None] = mapped_column(TS)
    acked_at: Mapped[datetime | None] = mapped_column(TS)


class PrintJob(Base):
    """A document to print, queued in the gateway's database.

    ``(merchant_id, source, source_id, station)`` is unique: one kitchen ticket or one paid
    order gives exactly one job however often its event arrives. Reprints are jobs of their
    own (``source = "reprint"``, ``source_id`` = the new job's id)."""

    __tablename__ = "print_jobs"
    __table_args__ = (
        sa.UniqueConstraint(
            "merchant_id", "source", "source_id", "station", name="uq_print_source"
        ),
        sa.Index("ix_print_jobs_due", "state", "next_attempt_at"),
        sa.Index("ix_print_jobs_store", "merchant_id", "store_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    merchant_id: Mapped[uuid.UUID] = mapped_column(UUID)
    store_id: Mapped[uuid.UUID] = mapped_column(UUID)
    source: Mapped[str] = mapped_column(sa.Text)  # kitchen_ticket, receipt, reprint
    source_id: Mapped[uuid.UUID] = mapped_column(UUID)
    station: Mapped[str] = mapped_column(sa.Text, server_default="")  # "" for receipts
    printer_type: Mapped[str] = mapped_column(sa.Text)
    document: Mapped[dict[str, Any]] = mapped_column(pg.JSONB)
    state: Mapped[str] = mapped_column(sa.Text, server_default="queued")
    device_id: Mapped[uuid.UUID | None] = mapped_column(UUID)
    attempts: Mapped[int] = mapped_column(sa.Integer, server_default="0")
    next_attempt_at: Mapped[datetime] = mapped_column(TS, server_default=NOW)
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    reprint_of: Mapped[uuid.UUID | None] = mapped_column(UUID)
    event_occurred_at: Mapped[datetime | None] = mapped_column(TS)
    created_at: Mapped[datetime] = mapped_column(TS, server_default=NOW)
    sent_at: Mapped[datetime | None] = mapped_column(TS)
    printed_at: Mapped[datetime | None] = mapped_column(TS)


class DeviceAlert(Base):
    """Something a store manager should look at; at most one open alert per device and kind."""

    __tablename__ = "device_alerts"
    __table_args__ = (
        sa.Index(
            "uq_device_alerts_open",
            "device_id",
            "kind",
            unique=True,
            postgresql_where=sa.text("resolved_at IS NULL AND device_id IS NOT NULL"),
        ),
        sa.Index("ix_device_alerts_store", "merchant_id", "store_id", "raised_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    merchant_id: Mapped[uuid.UUID] = mapped_column(UUID)
    store_id: Mapped[uuid.UUID] = mapped_column(UUID)
    device_id: Mapped[uuid.UUID | None] = mapped_column(UUID)
    print_job_id: Mapped[uuid.UUID | None] = mapped_column(UUID)
    kind: Mapped[str] = mapped_column(sa.Text)
    detail: Mapped[str] = mapped_column(sa.Text)
    raised_at: Mapped[datetime] = mapped_column(TS, server_default=NOW)
    resolved_at: Mapped[datetime | None] = mapped_column(TS)


class KitchenTicket(Base):
    """A kitchen ticket on the displays of its station, with its state."""

    __tablename__ = "kds_tickets"
    __table_args__ = (sa.Index("ix_kds_tickets_station", "merchant_id", "store_id", "station"),)

    merchant_id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    ticket_id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    store_id: Mapped[uuid.UUID] = mapped_column(UUID)
    order_id: Mapped[uuid.UUID] = mapped_column(UUID)
    station: Mapped[str] = mapped_column(sa.Text)
    table: Mapped[str | None] = mapped_column(sa.Text)
    lines: Mapped[list[dict[str, Any]]] = mapped_column(pg.JSONB)
    state: Mapped[str] = mapped_column(sa.Text, server_default="new")
    version: Mapped[int] = mapped_column(sa.Integer, server_default="1")
    created_at: Mapped[datetime] = mapped_column(TS, server_default=NOW)
    updated_at: Mapped[datetime] = mapped_column(TS, server_default=NOW)


class KitchenFeedEntry(Base):
    """One change on a station's display; ``seq`` is the SSE event id a display resumes from."""

    __tablename__ = "kds_feed"
    __table_args__ = (sa.Index("ix_kds_feed_station", "merchant_id", "store_id", "station", "seq"),)

    seq: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    merchant_id: Mapped[uuid.UUID] = mapped_column(UUID)
    store_id: Mapped[uuid.UUID] = mapped_column(UUID)
    station: Mapped[str] = mapped_column(sa.Text)
    ticket_id: Mapped[uuid.UUID] = mapped_column(UUID)
    state: Mapped[str] = mapped_column(sa.Text)
    data: Mapped[dict[str, Any]] = mapped_column(pg.JSONB)
    at: Mapped[datetime] = mapped_column(TS, server_default=NOW)
