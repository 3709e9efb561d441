"""Categories: a tree per merchant. A product's ``category_id`` must name one of them; a
category cannot become its own ancestor."""

from __future__ import annotations

import uuid
from typing import Annotated

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, Strict
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.ids import new_id
from inventory.catalog.service import require_merchant_wide
from inventory.models import Category
from servicekit.auth import Principal, scoped, scoped_to_merchant
from servicekit.errors import Conflict, FieldError, NotFound, ValidationFailed, VersionMismatch
from servicekit.text import StorableStr

Name = Annotated[StorableStr, Field(min_length=1, max_length=100)]


class CategoryCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: uuid.UUID | None = None
    name: Name
    parent_id: uuid.UUID | None = None


class CategoryUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Annotated[int, Strict(), Field(ge=1)]
    name: Name | None = None
    parent_id: uuid.UUID | None = None


class CategoryOut(BaseModel):
    id: uuid.UUID
    name: str
    parent_id: uuid.UUID | None
    version: int


def category_out(category: Category) -> CategoryOut:
    return CategoryOut(
        id=category.id, name=category.name, parent_id=category.parent_id, version=category.version
    )


async def require_category(
    session: AsyncSession, merchant_id: uuid.UUID, category_id: uuid.UUID, field: str
) -> None:
    """422 ``unknown_category`` unless the merchant has this category."""
    found = await session.scalar(
        scoped_to_merchant(sa.select(Category.id), Category, merchant_id).where(
            Category.id == category_id
        )
    )
    if found is None:
        raise ValidationFailed([FieldError(field, "unknown_category", "No such category.")])


async def subtree(
    session: AsyncSession, merchant_id: uuid.UUID, root: uuid.UUID
) -> list[uuid.UUID]:
    """``root`` and every category below it."""
    tree = (
        sa.select(Category.id)
        .where(Category.merchant_id == merchant_id, Category.id == root)
        .cte("tree", recursive=True)
    )
    tree = tree.union_all(
        sa.select(Category.id).where(
            Category.merchant_id == merchant_id, Category.parent_id == tree.c.id
        )
    )
    return list((await session.scalars(sa.select(tree.c.id))).all())


def _conflict(exc: IntegrityError) -> Conflict:
    if "uq_categories_name" in str(exc.orig):
        return Conflict("A sibling category has this name.", code="duplicate_category_name")
    if "categories_pkey" in str(exc.orig):
        return Conflict("A category with this id already exists.", code="duplicate_category_id")
    raise exc


async def _flush(session: AsyncSession, added: Category | None = None) -> None:
    """Flush in a savepoint, so the request's transaction survives to store the 409; a new
    row is added inside it (opening a savepoint flushes what is pending first)."""
    try:
        async with session.begin_nested():
            if added is not None:
                session.add(added)
            await session.flush()
    except IntegrityError as exc:
        raise _conflict(exc) from None


async def get(
    session: AsyncSession, principal: Principal, category_id: uuid.UUID, *, lock: bool = False
) -> Category:
    stmt = scoped(sa.select(Category), Category, principal).where(Category.id == category_id)
    if lock:
        stmt = stmt.with_for_update()
    category = (await session.execute(stmt)).scalar_one_or_none()
    if category is None:
        raise NotFound("Category not found.", code="category_not_found")
    return category


async def create(session: AsyncSession, principal: Principal, data: CategoryCreate) -> CategoryOut:
    require_merchant_wide(principal)
    if data.parent_id is not None:
        await require_category(session, principal.merchant_id, data.parent_id, "parent_id")
    category = Category(
        merchant_id=principal.merchant_id,
        id=data.id or new_id(),
        name=data.name,
        parent_id=data.parent_id,
        version=1,
    )
    await _flush(session, category)
    return category_out(category)


async def update(
    session: AsyncSession, principal: Principal, category_id: uuid.UUID, data: CategoryUpdate
) -> CategoryOut:
    require_merchant_wide(principal)
    category = await get(session, principal, category_id, lock=True)
    if category.version != data.version:
        raise VersionMismatch(current_version=category.version)
    sent = data.model_fields_set
    if "name" in sent:
        if data.name is None:
            raise ValidationFailed([FieldError("name", "invalid", "must not be null.")])
        category.name = data.name
    if "parent_id" in sent:
        if data.parent_id is not None:
            await require_category(session, principal.merchant_id, data.parent_id, "parent_id")
            # Under the category's own lock, a concurrent move of the new parent into this
            # subtree would be seen as soon as it commits; the check reads committed rows.
            if data.parent_id in await subtree(session, principal.merchant_id, category.id):
                raise ValidationFailed(
                    [
                        FieldError(
                            "parent_id", "category_cycle", "A category cannot be under itself."
                        )
                    ]
                )
        category.parent_id = data.parent_id
    category.version += 1
    await _flush(session)
    return category_out(category)
