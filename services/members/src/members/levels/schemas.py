"""Request and response bodies of the level endpoints."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from members.levels.models import MemberLevel
from servicekit.text import StorableStr

LevelName = Annotated[StorableStr, Field(min_length=1, max_length=50)]
Basis = Literal["spend", "points"]


class LevelCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: LevelName
    rank: int = Field(ge=1, le=1000, strict=True, description="Higher ranks are better.")
    basis: Basis = Field(description="What the threshold counts: lifetime spend or points.")
    threshold: int = Field(
        ge=0, le=10**12, strict=True, description="Minor units of spend, or points."
    )
    points_multiplier_bp: int = Field(
        default=10_000, ge=10_000, le=100_000, strict=True, description="10000 = 1x."
    )
    discount_bp: int = Field(
        default=0, ge=0, le=10_000, strict=True, description="Priced by orders (1000 = 10%)."
    )


class LevelUpdate(BaseModel):
    """Fields left out stay; the new definition applies from the next change of a member."""

    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1)
    name: LevelName | None = None
    rank: int | None = Field(default=None, ge=1, le=1000, strict=True)
    basis: Basis | None = None
    threshold: int | None = Field(default=None, ge=0, le=10**12, strict=True)
    points_multiplier_bp: int | None = Field(default=None, ge=10_000, le=100_000, strict=True)
    discount_bp: int | None = Field(default=None, ge=0, le=10_000, strict=True)


class LevelOut(BaseModel):
    id: uuid.UUID
    name: str
    rank: int
    basis: Basis
    threshold: int
    points_multiplier_bp: int
    discount_bp: int
    version: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, level: MemberLevel) -> LevelOut:
        return cls.model_validate(level, from_attributes=True)
