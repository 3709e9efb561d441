"""HTTP endpoints of the device registry: ``/v1/devices`` and a store's devices."""

from __future__ import annotations

import uuid
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Body, Depends, Response, status
from pydantic import BaseModel

from device_gateway.models import Device, DeviceBinding
from device_gateway.registry import service
from device_gateway.registry.schemas import (
    BindingOut,
    BindRequest,
    BoundDeviceOut,
    DeviceOut,
    DeviceUpdate,
    RebindRequest,
    UnbindRequest,
)
from servicekit.auth import Principal, PrincipalDep, require, scoped
from servicekit.errors import problem_responses
from servicekit.pagination import CursorParamsDep, Page, paginate
from servicekit.uow import SessionDep

router = APIRouter(tags=["devices"])

DeviceManager = Annotated[Principal, Depends(require("devices:manage"))]


@router.post(
    "/v1/devices/bind",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(403, 404, 409, 422),
)
async def bind_device(
    body: BindRequest, principal: DeviceManager, session: SessionDep
) -> BoundDeviceOut:
    """Bind a device to one of the caller's stores (``devices:manage``).

    A terminal, scanner, drawer or display is bound by its SN and the activation code on its
    screen; a network printer by SN and MAC with its ``host:port``. MQTT devices get their
    broker credentials in the answer, once. A device bound anywhere is 409
    ``device_already_bound``."""
    return await service.bind(session, principal, body)


@router.post("/v1/devices/{device_id}/unbind", responses=problem_responses(403, 404, 409))
async def unbind_device(
    device_id: uuid.UUID,
    principal: DeviceManager,
    session: SessionDep,
    body: Annotated[UnbindRequest | None, Body()] = None,
) -> DeviceOut:
    """Unbind a device (``devices:manage``): its MQTT credentials stop working."""
    return await service.unbind(session, principal, device_id, body.version if body else None)


@router.post("/v1/devices/{device_id}/rebind", responses=problem_responses(403, 404, 409, 422))
async def rebind_device(
    device_id: uuid.UUID, body: RebindRequest, principal: DeviceManager, session: SessionDep
) -> DeviceOut:
    """Move a device to another of the caller's stores in one audited step (``devices:manage``)."""
    return await service.rebind(
        session, principal, device_id, body.store_id, body.station, body.version
    )


@router.patch("/v1/devices/{device_id}", responses=problem_responses(403, 404, 409, 422))
async def update_device(
    device_id: uuid.UUID, body: DeviceUpdate, principal: DeviceManager, session: SessionDep
) -> DeviceOut:
    """Change a device's station, priority, paper width or address (``devices:manage``)."""
    return await service.update(session, principal, device_id, body)


@router.get("/v1/devices/{device_id}", responses=problem_responses(404))
async def get_device(
    device_id: uuid.UUID, principal: PrincipalDep, session: SessionDep
) -> DeviceOut:
    """A device of the caller's with its presence and last reported state."""
    return service.device_out(await service.visible(session, principal, device_id))


@router.get("/v1/devices/{device_id}/bindings", responses=problem_responses(404))
async def device_bindings(
    device_id: uuid.UUID, principal: PrincipalDep, session: SessionDep
) -> list[BindingOut]:
    """The binding history of a device, oldest first, as far as the caller's merchant goes."""
    await service.visible(session, principal, device_id)
    rows = await session.scalars(
        sa.select(DeviceBinding)
        .where(
            DeviceBinding.device_id == device_id,
            sa.or_(
                DeviceBinding.merchant_id == principal.merchant_id,
                DeviceBinding.previous_merchant_id == principal.merchant_id,
            ),
        )
        .order_by(DeviceBinding.at, DeviceBinding.id)
    )
    return [
        BindingOut(
            action=r.action,
            store_id=r.store_id if r.merchant_id == principal.merchant_id else None,
            previous_store_id=(
                r.previous_store_id if r.previous_merchant_id == principal.merchant_id else None
            ),
            actor=r.actor,
            at=r.at,
        )
        for r in rows
    ]


@router.get("/v1/stores/{store_id}/devices", responses=problem_responses(404))
async def store_devices(
    store_id: uuid.UUID,
    principal: PrincipalDep,
    session: SessionDep,
    params: CursorParamsDep,
    type: str | None = None,
    station: str | None = None,
    online: bool | None = None,
) -> Page[DeviceOut]:
    """The devices of a store with their state (online, last seen, paper, drawer)."""
    await service.own_store(session, principal, store_id)
    stmt = scoped(sa.select(Device), Device, principal).where(Device.store_id == store_id)
    if type is not None:
        stmt = stmt.where(Device.type == type)
    if station is not None:
        stmt = stmt.where(Device.station == station)
    if online is not None:
        stmt = stmt.where(Device.online == online)
    return await paginate(
        session, stmt, order_by=(Device.sn, Device.id), params=params, map=service.device_out
    )


class MqttLogin(BaseModel):
    username: str
    password: str
    clientid: str | None = None


@router.post("/v1/mqtt/auth", tags=["mqtt"], include_in_schema=True)
async def mqtt_auth(body: MqttLogin, session: SessionDep, response: Response) -> dict[str, str]:
    """The broker's HTTP authentication hook (EMQX ``http`` authenticator, mosquitto-go-auth):
    a device logs in with the credentials issued at binding; ``deny`` once it is unbound."""
    allowed = await service.check_mqtt_login(session, body.username, body.password)
    if not allowed:
        response.status_code = status.HTTP_403_FORBIDDEN
    return {"result": "allow" if allowed else "deny"}


class MqttAcl(BaseModel):
    username: str
    topic: str
    action: str | None = None


@router.post("/v1/mqtt/acl", tags=["mqtt"])
async def mqtt_acl(body: MqttAcl, response: Response) -> dict[str, str]:
    """The broker's authorization hook: a device publishes and subscribes under its own
    ``devices/{sn}/`` only."""
    allowed = body.topic.startswith(f"{service.topic_prefix(body.username)}/")
    if not allowed:
        response.status_code = status.HTTP_403_FORBIDDEN
    return {"result": "allow" if allowed else "deny"}
