"""HTTP endpoints of member analysis (``reports:read``): figures per store and period, one
member's figures with their RFM, and the members by RFM segment. Visits are counted in the
stores the caller sees."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, date, datetime
from typing import Annotated, get_args

from fastapi import APIRouter, Depends, Query

from members.analysis import service
from members.analysis.rfm import DEFAULT_CUTS, SEGMENT_NAMES_ZH, Segment
from members.analysis.schemas import (
    AnalysisOut,
    FavouriteOut,
    MemberAnalysisOut,
    RfmCutsOut,
    RfmOut,
    RfmSummaryOut,
    SegmentCount,
)
from members.member.service import get_member
from servicekit.auth import Principal, require
from servicekit.errors import problem_responses
from servicekit.uow import SessionDep

router = APIRouter(tags=["member analysis"])

ReportReader = Annotated[Principal, Depends(require("reports:read"))]
Currency = Annotated[str, Query(pattern="^[A-Z]{3}$", description="ISO 4217; default CNY.")]


@router.get(
    "/v1/members/analysis",
    responses=problem_responses(401, 403, 404, 422),
    summary="Member figures of a period: visits, spend, repurchase, new and returning",
)
async def analysis(
    session: SessionDep,
    principal: ReportReader,
    business_day_from: date,
    business_day_to: date,
    store_id: uuid.UUID | None = None,
    currency: Currency = "CNY",
) -> AnalysisOut:
    scope = service.Scope.of(principal, store_id, currency)
    figures = await service.figures(session, scope, business_day_from, business_day_to)
    return AnalysisOut.of(figures, scope, day_from=business_day_from, day_to=business_day_to)


@router.get(
    "/v1/members/rfm",
    responses=problem_responses(401, 403, 404, 422),
    summary="Members by RFM segment",
)
async def rfm_summary(
    session: SessionDep,
    principal: ReportReader,
    as_of: date | None = None,
    store_id: uuid.UUID | None = None,
    currency: Currency = "CNY",
) -> RfmSummaryOut:
    """Every member with a visit on or before ``as_of`` (default: today, UTC), by segment;
    the cut points are fixed (see the members API documentation)."""
    scope = service.Scope.of(principal, store_id, currency)
    day = as_of or datetime.now(UTC).date()
    scores = await service.rfm_by_member(session, scope, day)
    counts = Counter(rfm.segment for rfm in scores.values())
    segments: tuple[Segment, ...] = get_args(Segment)
    return RfmSummaryOut(
        as_of=day,
        currency=currency,
        cut_points=RfmCutsOut(
            recency_days=list(DEFAULT_CUTS.recency_days),
            frequency=list(DEFAULT_CUTS.frequency),
            monetary=list(DEFAULT_CUTS.monetary),
            window_days=DEFAULT_CUTS.window_days,
        ),
        members=len(scores),
        segments=[
            SegmentCount(segment=s, segment_zh=SEGMENT_NAMES_ZH[s], members=counts[s])
            for s in segments
        ],
    )


@router.get(
    "/v1/members/{member_id}/analysis",
    responses=problem_responses(401, 403, 404, 422),
    summary="One member's figures of a period and RFM",
)
async def member_analysis(
    member_id: uuid.UUID,
    session: SessionDep,
    principal: ReportReader,
    business_day_from: date,
    business_day_to: date,
    store_id: uuid.UUID | None = None,
    currency: Currency = "CNY",
) -> MemberAnalysisOut:
    member = await get_member(session, principal.merchant_id, member_id)
    scope = service.Scope.of(principal, store_id, currency)
    figures = await service.figures(
        session, scope, business_day_from, business_day_to, member_id=member.id
    )
    history = await service.member_history(session, scope, member.id)
    rfm = (await service.rfm_by_member(session, scope, business_day_to, member_ids=[member.id]))[
        member.id
    ]
    everyone = figures.everyone
    return MemberAnalysisOut(
        member_id=member.id,
        business_day_from=business_day_from,
        business_day_to=business_day_to,
        currency=currency,
        visits=everyone.visits,
        spend=scope.money(everyone.spend),
        average_ticket=scope.money(service.average(everyone.spend, everyone.visits)),
        first_visit=history.first_day,
        last_visit=history.last_day,
        is_new=figures.new.members > 0,
        favourite_products=[FavouriteOut.of(f) for f in figures.favourites],
        rfm=RfmOut.of(rfm, business_day_to),
    )
