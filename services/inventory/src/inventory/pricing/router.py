"""HTTP endpoints of HQ price distribution: ``/v1/store-groups`` and ``/v1/price-changes``."""

from __future__ import annotations

import uuid
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Depends, status

from inventory.models import PriceChange, StoreGroup
from inventory.pricing import service
from inventory.pricing.schemas import (
    PriceChangeCreate,
    PriceChangeOut,
    StoreGroupCreate,
    StoreGroupOut,
    StoreGroupUpdate,
)
from servicekit.auth import Principal, PrincipalDep, require, scoped
from servicekit.errors import problem_responses
from servicekit.idempotency import Idempotency, IdempotentRoute
from servicekit.pagination import CursorParamsDep, Page, paginate
from servicekit.uow import SessionDep

groups = APIRouter(prefix="/v1/store-groups", tags=["pricing"], route_class=IdempotentRoute)
changes = APIRouter(prefix="/v1/price-changes", tags=["pricing"], route_class=IdempotentRoute)

CatalogWriter = Annotated[Principal, Depends(require("catalog:manage"))]


@groups.post(
    "",
    status_code=status.HTTP_201_CREATED,
    dependencies=[Depends(Idempotency())],
    responses=problem_responses(403, 409, 422),
)
async def create_store_group(
    body: StoreGroupCreate, principal: CatalogWriter, session: SessionDep
) -> StoreGroupOut:
    """A set of the merchant's stores priced together (``catalog:manage``, merchant-wide)."""
    return await service.create_group(session, principal, body)


@groups.get("")
async def list_store_groups(
    principal: PrincipalDep, session: SessionDep, params: CursorParamsDep
) -> Page[StoreGroupOut]:
    return await paginate(
        session,
        scoped(sa.select(StoreGroup), StoreGroup, principal),
        order_by=(StoreGroup.created_at, StoreGroup.id),
        params=params,
        map=service.group_out,
    )


@groups.get("/{group_id}", responses=problem_responses(404))
async def get_store_group(
    group_id: uuid.UUID, principal: PrincipalDep, session: SessionDep
) -> StoreGroupOut:
    return service.group_out(await service.get_group(session, principal, group_id))


@groups.patch("/{group_id}", responses=problem_responses(403, 404, 409, 422))
async def update_store_group(
    group_id: uuid.UUID, body: StoreGroupUpdate, principal: CatalogWriter, session: SessionDep
) -> StoreGroupOut:
    return await service.update_group(session, principal, group_id, body)


@changes.post(
    "",
    status_code=status.HTTP_201_CREATED,
    dependencies=[Depends(Idempotency())],
    responses=problem_responses(403, 404, 409, 422),
)
async def schedule_price_change(
    body: PriceChangeCreate, principal: CatalogWriter, session: SessionDep
) -> PriceChangeOut:
    """New prices for every store or a store group, at once or at ``effective_at`` in each
    store's timezone (``catalog:manage``, merchant-wide)."""
    return await service.schedule(session, principal, body)


@changes.get("")
async def list_price_changes(
    principal: PrincipalDep, session: SessionDep, params: CursorParamsDep
) -> Page[PriceChangeOut]:
    page = await paginate(
        session,
        scoped(sa.select(PriceChange), PriceChange, principal),
        order_by=(PriceChange.created_at, PriceChange.id),
        params=params,
        descending=True,
    )
    return Page[PriceChangeOut](
        items=[await service.change_out(session, principal, change) for change in page.items],
        next_cursor=page.next_cursor,
    )


@changes.get("/{change_id}", responses=problem_responses(404))
async def get_price_change(
    change_id: uuid.UUID, principal: PrincipalDep, session: SessionDep
) -> PriceChangeOut:
    change = await service.get_change(session, principal, change_id)
    return await service.change_out(session, principal, change)


@changes.post("/{change_id}/cancel", responses=problem_responses(403, 404, 409))
async def cancel_price_change(
    change_id: uuid.UUID, principal: CatalogWriter, session: SessionDep
) -> PriceChangeOut:
    """Stop the stores that have not switched yet (``catalog:manage``, merchant-wide)."""
    return await service.cancel(session, principal, change_id)
