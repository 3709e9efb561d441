"""HTTP endpoints of member tags: manual tags of a member, and the tag rules."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends

from members.member.schemas import MemberOut, Tag
from members.tags import service
from members.tags.schemas import TagAdd, TagRuleCreate, TagRuleOut, TagRuleUpdate
from servicekit.auth import Principal, PrincipalDep, require
from servicekit.errors import problem_responses
from servicekit.idempotency import Idempotency, IdempotentRoute
from servicekit.uow import SessionDep

router = APIRouter(route_class=IdempotentRoute, tags=["tags"])

WriteMembers = Annotated[Principal, Depends(require("members:write"))]
ManageSettings = Annotated[Principal, Depends(require("settings:manage"))]


@router.post(
    "/v1/members/{member_id}/tags",
    dependencies=[Depends(Idempotency())],
    responses=problem_responses(401, 403, 404, 422),
    summary="Add a manual tag to a member",
)
async def add_tag(
    member_id: uuid.UUID, body: TagAdd, session: SessionDep, principal: WriteMembers
) -> MemberOut:
    member = await service.add_manual_tag(session, principal.merchant_id, member_id, body.tag)
    return MemberOut.of(member, reveal=True)


@router.delete(
    "/v1/members/{member_id}/tags/{tag}",
    responses=problem_responses(401, 403, 404, 422),
    summary="Remove a manual tag (a rule still met keeps its tag)",
)
async def remove_tag(
    member_id: uuid.UUID, tag: Tag, session: SessionDep, principal: WriteMembers
) -> MemberOut:
    member = await service.remove_manual_tag(session, principal.merchant_id, member_id, tag)
    return MemberOut.of(member, reveal=True)


@router.post(
    "/v1/member-tag-rules",
    status_code=201,
    dependencies=[Depends(Idempotency())],
    responses=problem_responses(401, 403, 409, 422),
    summary="Define a tag rule (applied on the next change of each member and by the sweep)",
)
async def create_rule(
    body: TagRuleCreate, session: SessionDep, principal: ManageSettings
) -> TagRuleOut:
    return TagRuleOut.of(await service.create_rule(session, principal.merchant_id, body))


@router.get("/v1/member-tag-rules", responses=problem_responses(401), summary="Tag rules")
async def list_rules(session: SessionDep, principal: PrincipalDep) -> list[TagRuleOut]:
    return [TagRuleOut.of(r) for r in await service.list_rules(session, principal.merchant_id)]


@router.put(
    "/v1/member-tag-rules/{rule_id}",
    responses=problem_responses(401, 403, 404, 409, 422),
    summary="Replace a tag rule's conditions (optimistic concurrency on version)",
)
async def update_rule(
    rule_id: uuid.UUID, body: TagRuleUpdate, session: SessionDep, principal: ManageSettings
) -> TagRuleOut:
    return TagRuleOut.of(await service.update_rule(session, principal.merchant_id, rule_id, body))
