"""HTTP endpoints of the category tree: ``/v1/categories``."""

from __future__ import annotations

import uuid
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Depends, status

from inventory.categories import service
from inventory.categories.service import CategoryCreate, CategoryOut, CategoryUpdate
from inventory.models import Category
from servicekit.auth import Principal, PrincipalDep, require, scoped
from servicekit.errors import problem_responses
from servicekit.idempotency import Idempotency, IdempotentRoute
from servicekit.pagination import CursorParamsDep, Page, paginate
from servicekit.uow import SessionDep

router = APIRouter(prefix="/v1/categories", tags=["catalog"], route_class=IdempotentRoute)

CatalogWriter = Annotated[Principal, Depends(require("catalog:manage"))]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    dependencies=[Depends(Idempotency())],
    responses=problem_responses(403, 409, 422),
)
async def create_category(
    body: CategoryCreate, principal: CatalogWriter, session: SessionDep
) -> CategoryOut:
    """Add a category, under ``parent_id`` or at the top (``catalog:manage``, merchant-wide)."""
    return await service.create(session, principal, body)


@router.get("")
async def list_categories(
    principal: PrincipalDep,
    session: SessionDep,
    params: CursorParamsDep,
    parent_id: uuid.UUID | None = None,
) -> Page[CategoryOut]:
    """The merchant's categories; with ``parent_id``, that category's children."""
    stmt = scoped(sa.select(Category), Category, principal)
    if parent_id is not None:
        stmt = stmt.where(Category.parent_id == parent_id)
    return await paginate(
        session,
        stmt,
        order_by=(Category.created_at, Category.id),
        params=params,
        map=service.category_out,
    )


@router.get("/{category_id}", responses=problem_responses(404))
async def get_category(
    category_id: uuid.UUID, principal: PrincipalDep, session: SessionDep
) -> CategoryOut:
    return service.category_out(await service.get(session, principal, category_id))


@router.patch("/{category_id}", responses=problem_responses(403, 404, 409, 422))
async def update_category(
    category_id: uuid.UUID, body: CategoryUpdate, principal: CatalogWriter, session: SessionDep
) -> CategoryOut:
    """Rename or move a category (``catalog:manage``, merchant-wide); moving it under itself
    or one of its descendants is 422 ``category_cycle``."""
    return await service.update(session, principal, category_id, body)
