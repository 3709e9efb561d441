"""Store endpoints (thin: the rules live in :mod:`identity.stores.service`)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends

from identity.common.schemas import VersionOnly
from identity.deps import ActorDep
from identity.stores import service
from identity.stores.schemas import (
    StoreCreate,
    StoreOut,
    StoreStatus,
    StoreStatusChange,
    StoreUpdate,
)
from servicekit.errors import problem_responses
from servicekit.idempotency import Idempotency, IdempotentRoute
from servicekit.pagination import CursorParamsDep, Page
from servicekit.uow import SessionDep

router = APIRouter(tags=["stores"], route_class=IdempotentRoute)


@router.post(
    "/v1/stores",
    status_code=201,
    response_model=StoreOut,
    dependencies=[Depends(Idempotency())],
    responses=problem_responses(401, 403, 409, 422),
    summary="Open a store (needs stores:manage)",
)
async def create_store(body: StoreCreate, session: SessionDep, actor: ActorDep) -> StoreOut:
    return await service.create(session, actor, body)


@router.get("/v1/stores", response_model=Page[StoreOut], summary="Stores the caller may see")
async def list_stores(
    session: SessionDep,
    actor: ActorDep,
    params: CursorParamsDep,
    status: StoreStatus | None = None,
    region_id: uuid.UUID | None = None,
) -> Page[StoreOut]:
    return await service.list_stores(session, actor, params, status=status, region_id=region_id)


@router.get("/v1/stores/{store_id}", response_model=StoreOut, responses=problem_responses(401, 404))
async def get_store(store_id: uuid.UUID, session: SessionDep, actor: ActorDep) -> StoreOut:
    return await service.get(session, actor, store_id)


@router.patch(
    "/v1/stores/{store_id}",
    response_model=StoreOut,
    responses=problem_responses(401, 403, 404, 409, 428, 422),
    summary="Change a store (send the version you read)",
)
async def update_store(
    store_id: uuid.UUID, body: StoreUpdate, session: SessionDep, actor: ActorDep
) -> StoreOut:
    return await service.update(session, actor, store_id, body)


@router.post(
    "/v1/stores/{store_id}/status",
    response_model=StoreOut,
    responses=problem_responses(401, 403, 404, 409, 428),
    summary="Set active, read_only (semantic lock) or archived",
)
async def change_store_status(
    store_id: uuid.UUID, body: StoreStatusChange, session: SessionDep, actor: ActorDep
) -> StoreOut:
    return await service.change_status(session, actor, store_id, body)


@router.post(
    "/v1/stores/{store_id}/disable",
    response_model=StoreOut,
    responses=problem_responses(401, 403, 404, 409, 428),
    summary="Archive a store (its records stay)",
)
async def disable_store(
    store_id: uuid.UUID, session: SessionDep, actor: ActorDep, body: VersionOnly | None = None
) -> StoreOut:
    change = StoreStatusChange(status="archived", version=body.version if body else None)
    return await service.change_status(session, actor, store_id, change)
