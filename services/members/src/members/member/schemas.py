"""Request and response bodies of the member endpoints."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from contracts import phones
from members.models import Member
from servicekit.text import StorableStr


def normalize_phone(value: str) -> str:
    """E.164, checked against the real numbering plans (separators allowed)."""
    try:
        return phones.normalize_phone(value)
    except ValueError as exc:
        raise PydanticCustomError("invalid_phone", str(exc)) from None


Phone = Annotated[str, Field(max_length=32), AfterValidator(normalize_phone)]


Tag = Annotated[StorableStr, Field(min_length=1, max_length=50)]
Name = Annotated[StorableStr | None, Field(max_length=100)]
Level = Annotated[StorableStr | None, Field(max_length=50)]


def mask_phone(phone: str) -> str:
    """``+8613812345678`` -> ``+86138****5678``."""
    if len(phone) <= 8:
        return phone[:2] + "*" * max(len(phone) - 4, 0) + phone[-2:]
    return phone[:-8] + "****" + phone[-4:]


class MemberCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    phone: Phone
    name: Name = None
    birthday: date | None = None
    tags: list[Tag] = Field(default_factory=list, max_length=50)
    level: Level = None


class MemberUpdate(BaseModel):
    """Fields left out stay as they are; ``version`` is the one read."""

    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1)
    phone: Phone | None = None
    name: Name = None
    birthday: date | None = None
    tags: list[Tag] | None = Field(default=None, max_length=50)
    level: Level = None


class MemberOut(BaseModel):
    id: uuid.UUID
    phone: str = Field(description="Masked unless the caller holds members:write.")
    phone_masked: bool
    name: str | None
    birthday: date | None
    tags: list[str]
    level: str | None
    points_balance: int
    version: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, m: Member, *, reveal: bool) -> MemberOut:
        return cls(
            id=m.id,
            phone=m.phone if reveal else mask_phone(m.phone),
            phone_masked=not reveal,
            name=m.name,
            birthday=m.birthday,
            tags=list(m.tags or []),
            level=m.level,
            points_balance=m.points_balance,
            version=m.version,
            created_at=m.created_at,
            updated_at=m.updated_at,
        )
