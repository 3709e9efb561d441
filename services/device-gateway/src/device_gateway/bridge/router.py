"""HTTP endpoints of device commands: ``/v1/devices/{device_id}/commands``."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, status
from pydantic import BaseModel, ConfigDict, Field

from device_gateway.bridge import service
from device_gateway.models import DeviceCommand
from servicekit.auth import Principal, PrincipalDep, require
from servicekit.errors import problem_responses
from servicekit.idempotency import Idempotency, IdempotentRoute
from servicekit.uow import SessionDep

router = APIRouter(
    prefix="/v1/devices/{device_id}/commands", tags=["devices"], route_class=IdempotentRoute
)

Operator = Annotated[Principal, Depends(require("devices:operate"))]


class CommandIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["open_drawer", "show_message"]
    payload: dict[str, Any] = Field(default_factory=dict, description='e.g. {"text": "..."}')


class CommandOut(BaseModel):
    id: uuid.UUID
    device_id: uuid.UUID
    kind: str
    payload: dict[str, Any]
    state: str
    attempts: int
    result: dict[str, Any] | None
    created_at: datetime
    sent_at: datetime | None
    acked_at: datetime | None


def command_out(command: DeviceCommand) -> CommandOut:
    return CommandOut(
        id=command.id,
        device_id=command.device_id,
        kind=command.kind,
        payload=command.payload,
        state=command.state,
        attempts=command.attempts,
        result=command.result,
        created_at=command.created_at,
        sent_at=command.sent_at,
        acked_at=command.acked_at,
    )


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=[Depends(Idempotency())],
    responses=problem_responses(403, 404, 409, 422),
)
async def send_command(
    device_id: uuid.UUID, body: CommandIn, principal: Operator, session: SessionDep
) -> CommandOut:
    """Queue a command for an MQTT device (``devices:operate``): sent when the device is
    online, again until it acknowledges. With an ``Idempotency-Key``, a retried request
    returns the first command instead of opening the drawer twice."""
    command = await service.queue_command(session, principal, device_id, body.kind, body.payload)
    return command_out(command)


@router.get("/{command_id}", responses=problem_responses(404))
async def get_command(
    device_id: uuid.UUID, command_id: uuid.UUID, principal: PrincipalDep, session: SessionDep
) -> CommandOut:
    return command_out(await service.visible_command(session, principal, device_id, command_id))
