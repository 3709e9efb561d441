"""Handover requests and responses."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from identity.common.validation import Password, Phone
from identity.staff.schemas import Assignment
from identity.verification.schemas import CodeField


class HandoverCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    phone: Phone = Field(description="The incoming super admin's phone; the code goes there.")
    name: str = Field(min_length=1, max_length=100)


class HandoverAccept(BaseModel):
    """Sent by the incoming admin with the code their phone received. A password is needed
    when the phone has no account at this merchant yet."""

    model_config = ConfigDict(extra="forbid")

    phone: Phone
    code: str = CodeField
    password: Password | None = None


class HandoverComplete(BaseModel):
    """What becomes of the outgoing super admin: another role, or deactivation."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["demote", "deactivate"]
    assignment: Assignment | None = Field(
        default=None, description="The new role when demoting (hq_admin keeps HQ reach)."
    )


class HandoverOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    merchant_id: uuid.UUID
    from_staff_id: uuid.UUID
    to_staff_id: uuid.UUID | None
    status: Literal["pending", "accepted", "completed", "cancelled"]
    outgoing_action: str | None
    created_at: datetime
    accepted_at: datetime | None
    completed_at: datetime | None
