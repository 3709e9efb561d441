"""Region requests and responses."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from identity.common.schemas import VersionedUpdate


class RegionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)


class RegionUpdate(VersionedUpdate):
    name: str | None = Field(default=None, min_length=1, max_length=100)


class RegionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    merchant_id: uuid.UUID
    name: str
    status: Literal["active", "disabled"]
    version: int
    created_at: datetime
    updated_at: datetime
