"""Device alerts a store manager sees: printer out of paper or cover open, a device offline
for too long, a print job that failed. A device has at most one open alert of a kind; raising
and resolving each writes an event that later alerting can forward."""

from __future__ import annotations

import uuid
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.events.devices import DeviceAlertRaised, DeviceAlertResolved
from contracts.ids import new_id
from device_gateway.common import emit, utcnow
from device_gateway.models import Device, DeviceAlert


async def raise_alert(
    session: AsyncSession,
    *,
    merchant_id: uuid.UUID,
    store_id: uuid.UUID,
    device_id: uuid.UUID | None,
    kind: str,
    detail: str,
    print_job_id: uuid.UUID | None = None,
) -> uuid.UUID | None:
    """Open an alert; None when the device already has this one open."""
    alert_id = new_id()
    inserted = await session.execute(
        pg.insert(DeviceAlert)
        .values(
            id=alert_id,
            merchant_id=merchant_id,
            store_id=store_id,
            device_id=device_id,
            print_job_id=print_job_id,
            kind=kind,
            detail=detail[:2000],
            raised_at=utcnow(),
        )
        .on_conflict_do_nothing(
            index_elements=["device_id", "kind"],
            index_where=sa.text("resolved_at IS NULL AND device_id IS NOT NULL"),
        )
        .returning(DeviceAlert.id)
    )
    if inserted.scalar_one_or_none() is None:
        return None
    await emit(
        session,
        DeviceAlertRaised(
            alert_id=alert_id,
            store_id=store_id,
            device_id=device_id,
            kind=kind,
            detail=detail[:2000],
        ),
        merchant_id=merchant_id,
        store_id=store_id,
        aggregate_id=alert_id,
    )
    return alert_id


async def resolve(session: AsyncSession, device_id: uuid.UUID, *kinds: str) -> None:
    """Close the device's open alerts of ``kinds`` (the condition is gone)."""
    resolved = await session.execute(
        sa.update(DeviceAlert)
        .where(
            DeviceAlert.device_id == device_id,
            DeviceAlert.kind.in_(kinds),
            DeviceAlert.resolved_at.is_(None),
        )
        .values(resolved_at=sa.func.now())
        .returning(DeviceAlert.id, DeviceAlert.merchant_id, DeviceAlert.store_id, DeviceAlert.kind)
    )
    for alert_id, merchant_id, store_id, kind in resolved.all():
        await emit(
            session,
            DeviceAlertResolved(
                alert_id=alert_id, store_id=store_id, device_id=device_id, kind=kind
            ),
            merchant_id=merchant_id,
            store_id=store_id,
            aggregate_id=alert_id,
        )


async def raise_offline_alerts(session: AsyncSession, minutes: float) -> int:
    """An ``offline`` alert for every bound device offline for longer than ``minutes``."""
    cutoff = utcnow() - timedelta(minutes=minutes)
    devices = await session.scalars(
        sa.select(Device).where(
            Device.store_id.is_not(None),
            Device.connection == "mqtt",
            Device.online.is_(False),
            Device.status_changed_at.is_not(None),
            Device.status_changed_at < cutoff,
        )
    )
    raised = 0
    for device in devices.all():
        assert device.merchant_id is not None
        assert device.store_id is not None
        alert = await raise_alert(
            session,
            merchant_id=device.merchant_id,
            store_id=device.store_id,
            device_id=device.id,
            kind="offline",
            detail=(
                f"{device.type} {device.sn} offline since "
                f"{device.status_changed_at:%Y-%m-%d %H:%M} UTC"
            ),
        )
        raised += alert is not None
    return raised
