"""Request and response bodies of the device registry."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from contracts.events.devices import DeviceType

PRINTER_TYPES = frozenset({"receipt_printer", "kitchen_printer", "label_printer"})
STATION_TYPES = frozenset({"kitchen_printer", "kds"})


class TcpConnection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["tcp"] = "tcp"
    host: str = Field(min_length=1, max_length=253)
    port: int = Field(default=9100, ge=1, le=65535)


class MqttConnection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["mqtt"] = "mqtt"


class BindRequest(BaseModel):
    """Bind a device to one of the caller's stores: by SN and the activation code the device
    shows, or (printers) by SN and MAC."""

    model_config = ConfigDict(extra="forbid")

    sn: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    store_id: uuid.UUID
    activation_code: str | None = Field(default=None, min_length=4, max_length=32)
    mac: str | None = Field(
        default=None, pattern=r"^[0-9A-Fa-f]{2}([:-]?[0-9A-Fa-f]{2}){5}$", description="printers"
    )
    type: DeviceType | None = Field(default=None, description="required when binding by MAC")
    model: str | None = Field(default=None, max_length=100)
    station: str | None = Field(default=None, min_length=1, max_length=64)
    connection: TcpConnection | MqttConnection | None = Field(default=None, discriminator="kind")
    paper_width_mm: Literal[58, 80] | None = None
    priority: int = Field(default=0, ge=0, le=100)

    @model_validator(mode="after")
    def _one_proof(self) -> BindRequest:
        if (self.activation_code is None) == (self.mac is None):
            raise ValueError("give either activation_code or mac")
        if self.mac is not None and self.type is None:
            raise ValueError("type is required when binding by mac")
        return self


class RebindRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    store_id: uuid.UUID
    station: str | None = Field(default=None, min_length=1, max_length=64)
    version: int | None = Field(default=None, ge=1, description="the version you last saw")


class UnbindRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int | None = Field(default=None, ge=1)


class DeviceUpdate(BaseModel):
    """Change how a bound device is reached or used."""

    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1)
    station: str | None = Field(default=None, min_length=1, max_length=64)
    priority: int | None = Field(default=None, ge=0, le=100)
    paper_width_mm: Literal[58, 80] | None = None
    connection: TcpConnection | MqttConnection | None = Field(default=None, discriminator="kind")


class MqttCredentials(BaseModel):
    """Shown once, at binding: the device connects to the broker with these."""

    username: str
    password: str
    client_id: str
    topic_prefix: str


class DeviceOut(BaseModel):
    id: uuid.UUID
    sn: str
    mac: str | None
    type: str
    model: str | None
    firmware: str | None
    connection: Literal["mqtt", "tcp"]
    host: str | None
    port: int | None
    paper_width_mm: int
    store_id: uuid.UUID | None
    station: str | None
    priority: int
    online: bool
    last_seen_at: datetime | None
    state: dict[str, Any]
    version: int
    bound_at: datetime | None


class BoundDeviceOut(DeviceOut):
    mqtt_credentials: MqttCredentials | None = None


class BindingOut(BaseModel):
    action: str
    store_id: uuid.UUID | None
    previous_store_id: uuid.UUID | None
    actor: uuid.UUID | None
    at: datetime
