"""What the gateway does with what devices say over MQTT (presence, heartbeats, scans, drawer
state, acknowledgements, hellos) and the command queue it sends them.

Commands live in the gateway's database until the device acknowledges them: a command for an
offline device waits there and goes out when the device comes back; one sent but not
acknowledged is sent again (the device dedupes by ``command_id``).
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.events.devices import DeviceOffline, DeviceOnline
from contracts.ids import new_id
from device_gateway.alerts import service as alerts
from device_gateway.common import emit, utcnow
from device_gateway.models import Device, DeviceCommand
from device_gateway.printing import service as printing
from device_gateway.registry import service as registry
from servicekit.auth import Principal
from servicekit.errors import IllegalState, NotFound

COMMANDS_CHANNEL = "device_commands"
COMMAND_KINDS = ("print", "open_drawer", "show_message", "unbind")


def parse(payload: bytes) -> dict[str, Any]:
    try:
        value = json.loads(payload or b"{}")
    except ValueError:
        return {"value": payload.decode("utf-8", errors="replace").strip()}
    return value if isinstance(value, dict) else {"value": value}


async def handle(session: AsyncSession, sn: str, kind: str, payload: bytes) -> bool:
    """Apply one message from ``devices/{sn}/{kind}``; True when commands may now be sendable."""
    body = parse(payload)
    if kind == "hello":
        await registry.announce(
            session,
            sn,
            type=str(body.get("type") or "pos_terminal"),
            model=body.get("model"),
            firmware=body.get("firmware"),
            mac=body.get("mac"),
            activation_code=body.get("activation_code"),
            paper_width_mm=body.get("paper_width_mm"),
        )
        return False
    device = await registry.by_sn(session, sn, for_update=True)
    if device is None:
        return False
    now = utcnow()
    if kind == "presence":
        state = str(body.get("state") or body.get("value") or "").lower()
        if state in ("online", "offline"):
            return await set_presence(session, device, state == "online", now)
        return False
    if kind == "heartbeat":
        device.last_seen_at = now
        if body:
            device.state = {**(device.state or {}), "heartbeat": body}
        if not device.online:
            return await set_presence(session, device, True, now)
        return False
    if kind == "scan":
        device.last_seen_at = now
        device.state = {**(device.state or {}), "last_scan": body.get("code") or body.get("value")}
        return False
    if kind == "drawer":
        device.last_seen_at = now
        device.state = {**(device.state or {}), "drawer": body.get("state") or body.get("value")}
        return False
    if kind == "status":
        device.last_seen_at = now
        await printer_status(session, device, body)
        return False
    if kind == "acks":
        await acknowledge(session, device, body, now)
        return False
    return False


async def set_presence(session: AsyncSession, device: Device, online: bool, now: datetime) -> bool:
    if online:
        device.last_seen_at = now
    if device.online == online:
        return online
    device.online = online
    device.status_changed_at = now
    if device.merchant_id is None or device.store_id is None:
        return online
    ref: dict[str, Any] = {
        "device_id": device.id,
        "sn": device.sn,
        "type": device.type,
        "store_id": device.store_id,
        "station": device.station,
        "at": now,
    }
    if online:
        await alerts.resolve(session, device.id, "offline")
        await emit(
            session,
            DeviceOnline(**ref),
            merchant_id=device.merchant_id,
            store_id=device.store_id,
            aggregate_id=device.id,
        )
    else:
        await emit(
            session,
            DeviceOffline(**ref, last_seen_at=device.last_seen_at),
            merchant_id=device.merchant_id,
            store_id=device.store_id,
            aggregate_id=device.id,
        )
    return online


async def printer_status(session: AsyncSession, device: Device, body: dict[str, Any]) -> None:
    """A cloud printer reports its paper and cover (``{"paper": "out", "cover": "open"}``):
    alerts open and close with the condition."""
    conditions = {
        "paper_out": body.get("paper") in ("out", "end", "empty"),
        "cover_open": body.get("cover") == "open",
    }
    paper = next((name for name, on in conditions.items() if on), "ok")
    device.state = {**(device.state or {}), "paper": paper}
    if device.merchant_id is None or device.store_id is None:
        return
    for name, on in conditions.items():
        if on:
            await alerts.raise_alert(
                session,
                merchant_id=device.merchant_id,
                store_id=device.store_id,
                device_id=device.id,
                kind=name,
                detail=f"{device.type} {device.sn}: {name.replace('_', ' ')}",
            )
    cleared = [name for name, on in conditions.items() if not on]
    if cleared:
        await alerts.resolve(session, device.id, *cleared)


async def acknowledge(
    session: AsyncSession, device: Device, body: dict[str, Any], now: datetime
) -> None:
    try:
        command_id = uuid.UUID(str(body.get("command_id")))
    except ValueError:
        return
    command = await session.get(DeviceCommand, command_id, with_for_update=True)
    if command is None or command.device_id != device.id or command.state == "acked":
        return
    command.state = "acked"
    command.acked_at = now
    command.result = {k: v for k, v in body.items() if k != "command_id"} or None
    device.last_seen_at = now
    if command.print_job_id is not None and body.get("ok", True):
        await printing.mark_printed(session, command.print_job_id, device.id)


async def sendable(
    session: AsyncSession, resend_after: float, limit: int = 200
) -> list[tuple[DeviceCommand, str]]:
    """Commands to publish now: queued or unacknowledged for too long, to online devices,
    oldest first; marked sent in the same transaction."""
    stale = utcnow() - timedelta(seconds=resend_after)
    rows = (
        await session.execute(
            sa.select(DeviceCommand, Device.sn)
            .join(Device, Device.id == DeviceCommand.device_id)
            .where(
                Device.online.is_(True),
                Device.connection == "mqtt",
                sa.or_(
                    DeviceCommand.state == "queued",
                    sa.and_(DeviceCommand.state == "sent", DeviceCommand.sent_at < stale),
                ),
            )
            .order_by(DeviceCommand.created_at, DeviceCommand.id)
            .limit(limit)
            .with_for_update(of=DeviceCommand, skip_locked=True)
        )
    ).all()
    return [(command, sn) for command, sn in rows]


def command_message(command: DeviceCommand) -> bytes:
    return json.dumps(
        {"command_id": str(command.id), "kind": command.kind, "payload": command.payload},
        ensure_ascii=False,
    ).encode()


async def queue_command(
    session: AsyncSession,
    principal: Principal,
    device_id: uuid.UUID,
    kind: str,
    payload: dict[str, Any],
) -> DeviceCommand:
    device = await registry.visible(session, principal, device_id)
    if device.connection != "mqtt":
        raise IllegalState("device_not_mqtt", "Commands go to MQTT devices only.")
    assert device.merchant_id is not None
    assert device.store_id is not None
    command = DeviceCommand(
        id=new_id(),
        device_id=device.id,
        merchant_id=device.merchant_id,
        store_id=device.store_id,
        kind=kind,
        payload=payload,
        state="queued",
        attempts=0,
        created_at=utcnow(),
    )
    session.add(command)
    await session.flush()
    await session.execute(sa.text(f"NOTIFY {COMMANDS_CHANNEL}"))
    return command


async def visible_command(
    session: AsyncSession, principal: Principal, device_id: uuid.UUID, command_id: uuid.UUID
) -> DeviceCommand:
    await registry.visible(session, principal, device_id)
    command = await session.get(DeviceCommand, command_id)
    if (
        command is None
        or command.device_id != device_id
        or command.merchant_id != principal.merchant_id
    ):
        raise NotFound("Command not found.", code="command_not_found")
    return command
