"""HTTP endpoints of points: the earning rule and a member's ledger."""

from __future__ import annotations

import uuid
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Depends

from members.member.service import get_member
from members.models import PointsEntry
from members.points import service
from members.points.schemas import (
    PointsEntryOut,
    PointsLedgerPage,
    PointsRuleOut,
    PointsRuleUpdate,
)
from servicekit.auth import Principal, PrincipalDep, require, scoped
from servicekit.errors import problem_responses
from servicekit.pagination import CursorParamsDep, paginate
from servicekit.uow import SessionDep

router = APIRouter(tags=["points"])

ManageSettings = Annotated[Principal, Depends(require("settings:manage"))]


def _out(rule: service.Rule) -> PointsRuleOut:
    return PointsRuleOut(
        points_per_unit=rule.points_per_unit,
        unit_amount=rule.unit_amount,
        version=rule.version,
        is_default=rule.is_default,
    )


@router.get("/v1/points-rule", responses=problem_responses(401), summary="The earning rule")
async def get_rule(session: SessionDep, principal: PrincipalDep) -> PointsRuleOut:
    return _out(await service.get_rule(session, principal.merchant_id))


@router.put(
    "/v1/points-rule",
    responses=problem_responses(401, 403, 409, 422),
    summary="Set the earning rule (applies to orders paid from now on)",
)
async def put_rule(
    body: PointsRuleUpdate, session: SessionDep, principal: ManageSettings
) -> PointsRuleOut:
    rule = await service.set_rule(
        session,
        principal.merchant_id,
        points_per_unit=body.points_per_unit,
        unit_amount=body.unit_amount,
        expected_version=body.version,
    )
    return _out(rule)


@router.get(
    "/v1/members/{member_id}/points",
    responses=problem_responses(400, 401, 404),
    summary="A member's points balance and ledger, newest first",
)
async def points_ledger(
    member_id: uuid.UUID, session: SessionDep, principal: PrincipalDep, page: CursorParamsDep
) -> PointsLedgerPage:
    member = await get_member(session, principal.merchant_id, member_id)
    stmt = scoped(sa.select(PointsEntry), PointsEntry, principal).where(
        PointsEntry.member_id == member.id
    )
    listing = await paginate(
        session,
        stmt,
        order_by=(PointsEntry.created_at, PointsEntry.id),
        params=page,
        map=PointsEntryOut.of,
        descending=True,
    )
    return PointsLedgerPage(
        items=listing.items, next_cursor=listing.next_cursor, balance=member.points_balance
    )
