"""Audit log responses."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


class AuditEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    action: str
    staff_id: uuid.UUID | None
    actor_id: uuid.UUID | None
    detail: dict[str, Any]
    ip: str | None
    created_at: datetime
