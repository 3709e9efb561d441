"""Request and response bodies of the tag endpoints."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from members.analysis.rfm import SEGMENTS
from members.levels.schemas import LevelName
from members.member.schemas import Tag
from members.tags.models import TagRule


class TagAdd(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tag: Tag


_SEGMENT_NAMES = tuple(SEGMENTS.values())


def _known_segment(name: str) -> str:
    if name not in _SEGMENT_NAMES:
        raise PydanticCustomError(
            "unknown_rfm_segment",
            "Not an RFM segment; one of: {names}.",
            {"names": ", ".join(_SEGMENT_NAMES)},
        )
    return name


def _distinct(names: list[str] | None) -> list[str] | None:
    return None if names is None else list(dict.fromkeys(names))


RfmSegmentName = Annotated[str, Field(max_length=40), AfterValidator(_known_segment)]


class _Conditions(BaseModel):
    levels: list[LevelName] | None = Field(
        default=None, max_length=50, description="The member holds one of these levels."
    )
    min_points_balance: int | None = Field(default=None, ge=0, le=10**12, strict=True)
    min_total_spend: int | None = Field(
        default=None, ge=0, le=10**12, strict=True, description="Lifetime spend, minor units."
    )
    min_visit_count: int | None = Field(default=None, ge=0, le=10**9, strict=True)
    birthday_month: int | None = Field(
        default=None, ge=1, le=12, strict=True, description="The member's birthday month."
    )
    rfm_segments: Annotated[
        list[RfmSegmentName] | None,
        Field(
            default=None,
            min_length=1,
            max_length=len(_SEGMENT_NAMES),
            description=(
                "The member's RFM segment (over all the merchant's stores, as of the "
                "merchant's today) is one of these: " + ", ".join(_SEGMENT_NAMES) + "."
            ),
        ),
        AfterValidator(_distinct),
    ] = None


_CONDITIONS = (
    "levels",
    "min_points_balance",
    "min_total_spend",
    "min_visit_count",
    "rfm_segments",
)


class TagRuleCreate(_Conditions):
    model_config = ConfigDict(extra="forbid")

    tag: Tag
    active: bool = True

    @model_validator(mode="after")
    def _some_condition(self) -> TagRuleCreate:
        if all(getattr(self, n) is None for n in (*_CONDITIONS, "birthday_month")):
            raise PydanticCustomError("rule_without_condition", "A rule needs a condition.")
        return self


class TagRuleUpdate(_Conditions):
    """The conditions replace the rule's; ``active: false`` takes the tag away from every
    member at the next evaluation."""

    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1)
    active: bool = True

    @model_validator(mode="after")
    def _some_condition(self) -> TagRuleUpdate:
        if all(getattr(self, n) is None for n in (*_CONDITIONS, "birthday_month")):
            raise PydanticCustomError("rule_without_condition", "A rule needs a condition.")
        return self


class TagRuleOut(BaseModel):
    id: uuid.UUID
    tag: str
    levels: list[str] | None
    min_points_balance: int | None
    min_total_spend: int | None
    min_visit_count: int | None
    birthday_month: int | None
    rfm_segments: list[str] | None
    active: bool
    version: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, rule: TagRule) -> TagRuleOut:
        return cls.model_validate(rule, from_attributes=True)
