"""The device registry: devices announce themselves, merchants bind them to a store, unbind
them and move them to another store (or, through legal-entity migration, another merchant).

A device is bound to at most one store at a time. Every step changes the device row, writes
its audit row and its event in one transaction.
"""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.events.devices import DeviceBound, DeviceRebound, DeviceUnbound
from contracts.ids import new_id
from device_gateway.common import emit, utcnow
from device_gateway.models import Device, DeviceBinding, DeviceCommand, Store
from device_gateway.registry import credentials
from device_gateway.registry.schemas import (
    PRINTER_TYPES,
    STATION_TYPES,
    BindRequest,
    BoundDeviceOut,
    DeviceOut,
    DeviceUpdate,
    MqttConnection,
    MqttCredentials,
    TcpConnection,
)
from servicekit.auth import Principal, require_store_access
from servicekit.errors import FieldError, IllegalState, NotFound, ValidationFailed, VersionMismatch


def topic_prefix(sn: str) -> str:
    return f"devices/{sn}"


def device_out(device: Device) -> DeviceOut:
    return DeviceOut(
        id=device.id,
        sn=device.sn,
        mac=device.mac,
        type=device.type,
        model=device.model,
        firmware=device.firmware,
        connection=device.connection,
        host=device.host,
        port=device.port,
        paper_width_mm=device.paper_width_mm,
        store_id=device.store_id,
        station=device.station,
        priority=device.priority,
        online=device.online,
        last_seen_at=device.last_seen_at,
        state=device.state or {},
        version=device.version,
        bound_at=device.bound_at,
    )


async def announce(
    session: AsyncSession,
    sn: str,
    *,
    type: str,
    model: str | None,
    firmware: str | None,
    mac: str | None,
    activation_code: str | None,
    paper_width_mm: int | None = None,
) -> Device:
    """A device says hello (over MQTT). An unbound device registers or refreshes the activation
    code it shows; a bound one only updates what it reports about itself."""
    device = await by_sn(session, sn, for_update=True)
    if device is None:
        device = Device(
            id=new_id(),
            sn=sn,
            type=type,
            connection="mqtt",
            paper_width_mm=paper_width_mm or 80,
            state={},
            version=1,
            priority=0,
            online=False,
        )
        session.add(device)
    device.model = model or device.model
    device.firmware = firmware or device.firmware
    if mac and device.mac is None:
        device.mac = credentials.normalize_mac(mac)
    if device.store_id is None:
        device.type = type
        if activation_code:
            device.activation_code_hash = credentials.hash_secret(activation_code, sn)
    await session.flush()
    return device


async def by_sn(session: AsyncSession, sn: str, *, for_update: bool = False) -> Device | None:
    stmt = sa.select(Device).where(Device.sn == sn)
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def visible(
    session: AsyncSession, principal: Principal, device_id: uuid.UUID, *, for_update: bool = False
) -> Device:
    """The caller's device, or 404 (another merchant's device does not exist for them)."""
    stmt = sa.select(Device).where(
        Device.id == device_id, Device.merchant_id == principal.merchant_id
    )
    if principal.store_ids is not None:
        stmt = stmt.where(Device.store_id.in_(sorted(principal.store_ids)))
    if for_update:
        stmt = stmt.with_for_update()
    device = (await session.execute(stmt)).scalar_one_or_none()
    if device is None:
        raise NotFound("Device not found.", code="device_not_found")
    return device


async def own_store(session: AsyncSession, principal: Principal, store_id: uuid.UUID) -> Store:
    require_store_access(principal, store_id)
    store = await session.get(Store, store_id)
    if store is None or store.merchant_id != principal.merchant_id:
        raise NotFound("Store not found.", code="store_not_found")
    return store


def _field(field: str, code: str, message: str) -> ValidationFailed:
    return ValidationFailed([FieldError(field, code, message)])


def _apply_connection(device: Device, connection: TcpConnection | MqttConnection | None) -> None:
    if isinstance(connection, TcpConnection):
        device.connection, device.host, device.port = "tcp", connection.host, connection.port
    elif isinstance(connection, MqttConnection):
        device.connection, device.host, device.port = "mqtt", None, None


def _check_station(device: Device) -> None:
    if device.type in STATION_TYPES and not device.station:
        raise _field("station", "station_required", f"A {device.type} serves a kitchen station.")


async def _audit(
    session: AsyncSession,
    device: Device,
    action: str,
    actor: uuid.UUID | None,
    previous_merchant_id: uuid.UUID | None = None,
    previous_store_id: uuid.UUID | None = None,
) -> None:
    session.add(
        DeviceBinding(
            id=new_id(),
            device_id=device.id,
            action=action,
            merchant_id=device.merchant_id,
            store_id=device.store_id,
            previous_merchant_id=previous_merchant_id,
            previous_store_id=previous_store_id,
            actor=actor,
            at=utcnow(),
        )
    )


async def bind(session: AsyncSession, principal: Principal, body: BindRequest) -> BoundDeviceOut:
    store = await own_store(session, principal, body.store_id)
    device = await by_sn(session, body.sn, for_update=True)
    if device is not None and device.merchant_id is not None:
        # The same answer whoever holds it: an SN says nothing about another merchant.
        raise IllegalState("device_already_bound", "This device is bound; unbind it first.")
    if body.activation_code is not None:
        if device is None or not credentials.matches(
            body.activation_code, body.sn, device.activation_code_hash
        ):
            raise _field(
                "activation_code", "activation_code_invalid", "The code does not match the device."
            )
    else:
        assert body.mac is not None
        assert body.type is not None
        if body.type not in PRINTER_TYPES:
            raise _field("mac", "mac_binding_printers_only", "Only printers are bound by MAC.")
        mac = credentials.normalize_mac(body.mac)
        if device is None:
            device = Device(
                id=new_id(),
                sn=body.sn,
                mac=mac,
                type=body.type,
                connection="tcp",
                state={},
                version=1,
                online=False,
                paper_width_mm=80,
            )
            session.add(device)
        elif device.mac != mac:
            raise _field("mac", "mac_mismatch", "The MAC does not match the device.")
    if body.type is not None and body.activation_code is None:
        device.type = body.type
    device.model = body.model or device.model
    device.station = body.station
    device.priority = body.priority
    if body.paper_width_mm is not None:
        device.paper_width_mm = body.paper_width_mm
    _apply_connection(device, body.connection)
    if device.connection == "tcp" and not device.host:
        raise _field("connection", "connection_required", "A network printer needs host:port.")
    _check_station(device)
    # Whatever was still queued for an earlier binding (its "unbind" above all) is not for
    # the new owner.
    await session.execute(
        sa.delete(DeviceCommand).where(
            DeviceCommand.device_id == device.id, DeviceCommand.state != "acked"
        )
    )
    device.merchant_id = store.merchant_id
    device.store_id = store.store_id
    device.activation_code_hash = None
    device.bound_at = utcnow()
    device.version += 1
    issued: MqttCredentials | None = None
    if device.connection == "mqtt":
        password = credentials.new_password()
        device.mqtt_password_hash = credentials.hash_secret(password, device.sn)
        issued = MqttCredentials(
            username=device.sn,
            password=password,
            client_id=f"device-{device.sn}",
            topic_prefix=topic_prefix(device.sn),
        )
    await session.flush()
    await _audit(session, device, "bound", principal.subject)
    await emit(
        session,
        DeviceBound(
            device_id=device.id,
            sn=device.sn,
            type=device.type,
            store_id=store.store_id,
            station=device.station,
            bound_by=principal.subject,
        ),
        merchant_id=store.merchant_id,
        store_id=store.store_id,
        aggregate_id=device.id,
    )
    return BoundDeviceOut(**device_out(device).model_dump(), mqtt_credentials=issued)


def _check_version(device: Device, version: int | None) -> None:
    if version is not None and version != device.version:
        raise VersionMismatch(current_version=device.version)


async def unbind(
    session: AsyncSession, principal: Principal, device_id: uuid.UUID, version: int | None
) -> DeviceOut:
    device = await visible(session, principal, device_id, for_update=True)
    _check_version(device, version)
    merchant_id, store_id = device.merchant_id, device.store_id
    assert merchant_id is not None
    assert store_id is not None
    if device.connection == "mqtt":
        # Told while its credentials still work: the device wipes its binding and shows a code.
        session.add(
            DeviceCommand(
                id=new_id(),
                device_id=device.id,
                merchant_id=merchant_id,
                store_id=store_id,
                kind="unbind",
                payload={},
                state="queued",
                attempts=0,
                created_at=utcnow(),
            )
        )
    device.merchant_id = None
    device.store_id = None
    device.station = None
    device.bound_at = None
    device.mqtt_password_hash = None
    device.version += 1
    await session.flush()
    await _audit(session, device, "unbound", principal.subject, merchant_id, store_id)
    await emit(
        session,
        DeviceUnbound(
            device_id=device.id,
            sn=device.sn,
            type=device.type,
            store_id=store_id,
            unbound_by=principal.subject,
        ),
        merchant_id=merchant_id,
        store_id=store_id,
        aggregate_id=device.id,
    )
    return device_out(device)


async def move(
    session: AsyncSession,
    device: Device,
    store: Store,
    *,
    station: str | None,
    actor: uuid.UUID | None,
) -> Device:
    """Rebind ``device`` to ``store`` (of any merchant: legal-entity migration moves devices
    between merchants) as one audited step. Pending work for the old store is dropped."""
    previous_merchant, previous_store = device.merchant_id, device.store_id
    if previous_merchant is None or previous_store is None:
        raise IllegalState("device_not_bound", "Only a bound device can be rebound.")
    if store.merchant_id != previous_merchant:
        # Another merchant must not inherit the old one's credentials or queued commands.
        device.mqtt_password_hash = None
        await session.execute(
            sa.delete(DeviceCommand).where(
                DeviceCommand.device_id == device.id, DeviceCommand.state != "acked"
            )
        )
    device.merchant_id = store.merchant_id
    device.store_id = store.store_id
    device.station = station if station is not None else device.station
    _check_station(device)
    device.bound_at = utcnow()
    device.version += 1
    await session.flush()
    await _audit(session, device, "rebound", actor, previous_merchant, previous_store)
    await emit(
        session,
        DeviceRebound(
            device_id=device.id,
            sn=device.sn,
            type=device.type,
            store_id=store.store_id,
            station=device.station,
            previous_merchant_id=previous_merchant,
            previous_store_id=previous_store,
            rebound_by=actor,
        ),
        merchant_id=store.merchant_id,
        store_id=store.store_id,
        aggregate_id=device.id,
    )
    return device


async def rebind(
    session: AsyncSession,
    principal: Principal,
    device_id: uuid.UUID,
    store_id: uuid.UUID,
    station: str | None,
    version: int | None,
) -> DeviceOut:
    device = await visible(session, principal, device_id, for_update=True)
    _check_version(device, version)
    store = await own_store(session, principal, store_id)
    if store.store_id == device.store_id and (station is None or station == device.station):
        return device_out(device)
    await move(session, device, store, station=station, actor=principal.subject)
    return device_out(device)


async def update(
    session: AsyncSession, principal: Principal, device_id: uuid.UUID, body: DeviceUpdate
) -> DeviceOut:
    device = await visible(session, principal, device_id, for_update=True)
    _check_version(device, body.version)
    changes: dict[str, Any] = body.model_dump(exclude_unset=True, exclude={"version", "connection"})
    for name, value in changes.items():
        if value is not None:
            setattr(device, name, value)
    _apply_connection(device, body.connection)
    if device.connection == "tcp" and not device.host:
        raise _field("connection", "connection_required", "A network printer needs host:port.")
    _check_station(device)
    device.version += 1
    await session.flush()
    return device_out(device)


async def check_mqtt_login(session: AsyncSession, username: str, password: str) -> bool:
    """Whether a bound device may connect to the broker with these credentials."""
    device = await by_sn(session, username)
    return (
        device is not None
        and device.store_id is not None
        and credentials.matches(password, device.sn, device.mqtt_password_hash)
    )
