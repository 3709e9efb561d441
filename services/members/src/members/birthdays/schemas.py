"""Request and response bodies of the birthday benefit endpoints."""

from __future__ import annotations

from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from members.birthdays.models import BirthdayBenefit


def _known_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise PydanticCustomError("unknown_timezone", "Not an IANA time zone.") from None
    return value


TimeZone = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_known_zone)]


class BirthdayBenefitUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    points_multiplier_bp: int = Field(
        ge=10_000, le=100_000, strict=True, description="10000 = 1x, 20000 = double points."
    )
    timezone: TimeZone = "Asia/Shanghai"
    version: int | None = Field(
        default=None, ge=0, description="The version read (0 before the first change)."
    )


class BirthdayBenefitOut(BaseModel):
    points_multiplier_bp: int
    timezone: str
    version: int

    @classmethod
    def of(cls, row: BirthdayBenefit) -> BirthdayBenefitOut:
        return cls(
            points_multiplier_bp=row.points_multiplier_bp,
            timezone=row.timezone,
            version=row.version,
        )
