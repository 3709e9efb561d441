"""HTTP endpoints of members."""

from __future__ import annotations

import uuid
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query

from members.member import service
from members.member.schemas import MemberCreate, MemberOut, MemberUpdate, Phone
from members.models import Member
from servicekit.auth import Principal, PrincipalDep, require, require_any, scoped
from servicekit.errors import problem_responses
from servicekit.idempotency import Idempotency, IdempotentRoute
from servicekit.pagination import CursorParamsDep, Page, paginate
from servicekit.uow import SessionDep

router = APIRouter(route_class=IdempotentRoute, tags=["members"])

WriteMembers = Annotated[Principal, Depends(require("members:write"))]
# Signing a customer up at the till needs no access to the other members' phones.
RegisterMembers = Annotated[Principal, Depends(require_any("members:register", "members:write"))]


def _reveal(principal: Principal) -> bool:
    return principal.has("members:write")


@router.post(
    "/v1/members",
    status_code=201,
    dependencies=[Depends(Idempotency())],
    responses=problem_responses(401, 403, 409, 422),
    summary="Register a member",
)
async def create_member(
    body: MemberCreate, session: SessionDep, principal: RegisterMembers
) -> MemberOut:
    member = await service.create_member(session, principal.merchant_id, body)
    # The caller typed the phone: showing it back reveals nothing.
    return MemberOut.of(member, reveal=True)


@router.get("/v1/members", responses=problem_responses(400, 401), summary="Members, oldest first")
async def list_members(
    session: SessionDep, principal: PrincipalDep, page: CursorParamsDep
) -> Page[MemberOut]:
    reveal = _reveal(principal)
    stmt = scoped(sa.select(Member), Member, principal)
    return await paginate(
        session,
        stmt,
        order_by=(Member.created_at, Member.id),
        params=page,
        map=lambda m: MemberOut.of(m, reveal=reveal),
    )


@router.get(
    "/v1/members/lookup",
    responses=problem_responses(401, 404, 422),
    summary="Find a member by phone (at the till)",
)
async def lookup_member(
    session: SessionDep, principal: PrincipalDep, phone: Annotated[Phone, Query()]
) -> MemberOut:
    member = await service.find_by_phone(session, principal.merchant_id, phone)
    # The caller typed the phone: showing it back reveals nothing.
    return MemberOut.of(member, reveal=True)


@router.get("/v1/members/{member_id}", responses=problem_responses(401, 404), summary="One member")
async def get_member(
    member_id: uuid.UUID, session: SessionDep, principal: PrincipalDep
) -> MemberOut:
    member = await service.get_member(session, principal.merchant_id, member_id)
    return MemberOut.of(member, reveal=_reveal(principal))


@router.patch(
    "/v1/members/{member_id}",
    responses=problem_responses(401, 403, 404, 409, 422),
    summary="Change a member (optimistic concurrency on version)",
)
async def update_member(
    member_id: uuid.UUID, body: MemberUpdate, session: SessionDep, principal: WriteMembers
) -> MemberOut:
    member = await service.update_member(session, principal.merchant_id, member_id, body)
    return MemberOut.of(member, reveal=True)
