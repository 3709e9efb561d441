"""Region endpoints."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends

from identity.common.schemas import VersionOnly
from identity.deps import ActorDep
from identity.regions import service
from identity.regions.schemas import RegionCreate, RegionOut, RegionUpdate
from servicekit.errors import problem_responses
from servicekit.idempotency import Idempotency, IdempotentRoute
from servicekit.pagination import CursorParamsDep, Page
from servicekit.uow import SessionDep

router = APIRouter(tags=["regions"], route_class=IdempotentRoute)


@router.post(
    "/v1/regions",
    status_code=201,
    response_model=RegionOut,
    dependencies=[Depends(Idempotency())],
    responses=problem_responses(401, 403, 409, 422),
    summary="Create a region (needs settings:manage)",
)
async def create_region(body: RegionCreate, session: SessionDep, actor: ActorDep) -> RegionOut:
    return await service.create(session, actor, body)


@router.get("/v1/regions", response_model=Page[RegionOut], summary="Regions the caller may see")
async def list_regions(
    session: SessionDep, actor: ActorDep, params: CursorParamsDep
) -> Page[RegionOut]:
    return await service.list_regions(session, actor, params)


@router.get(
    "/v1/regions/{region_id}", response_model=RegionOut, responses=problem_responses(401, 404)
)
async def get_region(region_id: uuid.UUID, session: SessionDep, actor: ActorDep) -> RegionOut:
    return await service.get(session, actor, region_id)


@router.patch(
    "/v1/regions/{region_id}",
    response_model=RegionOut,
    responses=problem_responses(401, 403, 404, 409, 428, 422),
)
async def update_region(
    region_id: uuid.UUID, body: RegionUpdate, session: SessionDep, actor: ActorDep
) -> RegionOut:
    return await service.update(session, actor, region_id, body)


@router.post(
    "/v1/regions/{region_id}/disable",
    response_model=RegionOut,
    responses=problem_responses(401, 403, 404, 409, 428),
)
async def disable_region(
    region_id: uuid.UUID, session: SessionDep, actor: ActorDep, body: VersionOnly | None = None
) -> RegionOut:
    version = body.version if body is not None else None
    return await service.disable(session, actor, region_id, version)
