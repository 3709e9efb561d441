"""Request and response bodies of the member endpoints."""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from members.models import Member

_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_SEPARATORS = re.compile(r"[\s\-().]")


def normalize_phone(value: str) -> str:
    """E.164, after dropping the spaces, dashes, dots and brackets people type."""
    phone = _SEPARATORS.sub("", value)
    if not _E164.match(phone):
        raise PydanticCustomError(
            "invalid_phone", "phone must be in E.164 form, e.g. +8613800138000"
        )
    return phone


Phone = Annotated[str, Field(max_length=32), AfterValidator(normalize_phone)]


def _storable(value: str | None) -> str | None:
    # PostgreSQL cannot store a NUL character: refuse it here rather than fail in the database.
    if value is not None and "\x00" in value:
        raise PydanticCustomError(
            "unstorable_character", "text must not contain the NUL character (U+0000)"
        )
    return value


Tag = Annotated[str, Field(min_length=1, max_length=50), AfterValidator(_storable)]
Name = Annotated[str | None, Field(max_length=100), AfterValidator(_storable)]
Level = Annotated[str | None, Field(max_length=50), AfterValidator(_storable)]


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
