"""HTTP endpoints of member levels (merchant-wide settings)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends

from members.levels import service
from members.levels.schemas import LevelCreate, LevelOut, LevelUpdate
from servicekit.auth import Principal, PrincipalDep, require
from servicekit.errors import problem_responses
from servicekit.idempotency import Idempotency, IdempotentRoute
from servicekit.uow import SessionDep

router = APIRouter(route_class=IdempotentRoute, tags=["levels"])

ManageSettings = Annotated[Principal, Depends(require("settings:manage"))]


@router.post(
    "/v1/member-levels",
    status_code=201,
    dependencies=[Depends(Idempotency())],
    responses=problem_responses(401, 403, 409, 422),
    summary="Define a member level",
)
async def create_level(
    body: LevelCreate, session: SessionDep, principal: ManageSettings
) -> LevelOut:
    return LevelOut.of(await service.create_level(session, principal.merchant_id, body))


@router.get("/v1/member-levels", responses=problem_responses(401), summary="Levels, by rank")
async def list_levels(session: SessionDep, principal: PrincipalDep) -> list[LevelOut]:
    return [LevelOut.of(x) for x in await service.list_levels(session, principal.merchant_id)]


@router.patch(
    "/v1/member-levels/{level_id}",
    responses=problem_responses(401, 403, 404, 409, 422),
    summary="Change a level (optimistic concurrency on version)",
)
async def update_level(
    level_id: uuid.UUID, body: LevelUpdate, session: SessionDep, principal: ManageSettings
) -> LevelOut:
    level = await service.update_level(session, principal.merchant_id, level_id, body)
    return LevelOut.of(level)
