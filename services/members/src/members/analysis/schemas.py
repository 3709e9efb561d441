"""Response bodies of member analysis."""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal

from pydantic import BaseModel, Field

from contracts.money import Money
from members.analysis.rfm import SEGMENT_NAMES_ZH, Rfm, Segment
from members.analysis.service import Favourite, Figures, Group, Scope, average, ratio


class GroupOut(BaseModel):
    members: int
    visits: int
    spend: Money

    @classmethod
    def of(cls, group: Group, scope: Scope) -> GroupOut:
        return cls(members=group.members, visits=group.visits, spend=scope.money(group.spend))


class FavouriteOut(BaseModel):
    product_id: uuid.UUID
    quantity: int
    visits: int = Field(description="Visits that bought it.")

    @classmethod
    def of(cls, favourite: Favourite) -> FavouriteOut:
        return cls(
            product_id=favourite.product_id, quantity=favourite.quantity, visits=favourite.visits
        )


class RfmOut(BaseModel):
    as_of: date
    recency: int = Field(ge=1, le=5)
    frequency: int = Field(ge=1, le=5)
    monetary: int = Field(ge=1, le=5)
    code: str = Field(description="The three scores, e.g. 543.")
    segment: Segment
    segment_zh: str

    @classmethod
    def of(cls, rfm: Rfm, as_of: date) -> RfmOut:
        return cls(
            as_of=as_of,
            recency=rfm.recency,
            frequency=rfm.frequency,
            monetary=rfm.monetary,
            code=rfm.code,
            segment=rfm.segment,
            segment_zh=SEGMENT_NAMES_ZH[rfm.segment],
        )


class AnalysisOut(BaseModel):
    business_day_from: date
    business_day_to: date
    currency: str
    members: int = Field(description="Members with at least one visit in the period.")
    visits: int
    visits_per_member: Decimal = Field(description="Two decimals, half up.")
    spend: Money = Field(description="Net of refunds.")
    average_ticket: Money = Field(description="Spend / visits, half up to the minor unit.")
    repeat_members: int = Field(description="Members with two visits or more.")
    repurchase_rate: Decimal = Field(description="repeat_members / members, four decimals.")
    new: GroupOut = Field(description="Members whose first visit ever is in the period.")
    returning: GroupOut
    favourite_products: list[FavouriteOut]

    @classmethod
    def of(
        cls,
        figures: Figures,
        scope: Scope,
        *,
        day_from: date,
        day_to: date,
    ) -> AnalysisOut:
        everyone = figures.everyone
        return cls(
            business_day_from=day_from,
            business_day_to=day_to,
            currency=scope.currency,
            members=everyone.members,
            visits=everyone.visits,
            visits_per_member=ratio(everyone.visits, everyone.members, 2),
            spend=scope.money(everyone.spend),
            average_ticket=scope.money(average(everyone.spend, everyone.visits)),
            repeat_members=figures.repeat_members,
            repurchase_rate=ratio(figures.repeat_members, everyone.members, 4),
            new=GroupOut.of(figures.new, scope),
            returning=GroupOut.of(figures.returning, scope),
            favourite_products=[FavouriteOut.of(f) for f in figures.favourites],
        )


class MemberAnalysisOut(BaseModel):
    member_id: uuid.UUID
    business_day_from: date
    business_day_to: date
    currency: str
    visits: int
    spend: Money
    average_ticket: Money
    first_visit: date | None = Field(description="First visit ever, in the stores covered.")
    last_visit: date | None
    is_new: bool = Field(description="The first visit ever is in the period.")
    favourite_products: list[FavouriteOut]
    rfm: RfmOut = Field(description="As of business_day_to.")


class SegmentCount(BaseModel):
    segment: Segment
    segment_zh: str
    members: int


class RfmCutsOut(BaseModel):
    recency_days: list[int] = Field(description="Most days since the last visit for 5, 4, 3, 2.")
    frequency: list[int] = Field(description="Fewest visits for 5, 4, 3, 2.")
    monetary: list[int] = Field(description="Least net spend (minor units) for 5, 4, 3, 2.")
    window_days: int


class RfmSummaryOut(BaseModel):
    as_of: date
    currency: str
    cut_points: RfmCutsOut
    members: int = Field(description="Members with a visit on or before as_of.")
    segments: list[SegmentCount]
