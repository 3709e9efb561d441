"""HTTP endpoints of promotions: ``/v1/promotions``."""

from __future__ import annotations

import uuid
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Depends, status

from orders.models import Promotion, PromotionVersion
from orders.promotions import service
from orders.promotions.schemas import PromotionIn, PromotionOut, PromotionUpdate
from servicekit.auth import Principal, PrincipalDep, require
from servicekit.errors import problem_responses
from servicekit.idempotency import Idempotency, IdempotentRoute
from servicekit.pagination import CursorParamsDep, Page, paginate
from servicekit.uow import SessionDep

router = APIRouter(prefix="/v1/promotions", tags=["promotions"], route_class=IdempotentRoute)

PromotionWriter = Annotated[Principal, Depends(require("promotions:write"))]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    dependencies=[Depends(Idempotency(required=True))],
    responses=problem_responses(400, 403, 404, 422),
)
async def create_promotion(
    body: PromotionIn, principal: PromotionWriter, session: SessionDep
) -> PromotionOut:
    """Create a promotion, version 1 (``promotions:write``; ``Idempotency-Key`` required).

    Without ``store_ids`` it runs in every store: only a caller reaching every store may do
    that (403 ``promotion_scope``), as naming a store outside one's reach is; a store
    unknown to the merchant is 422 ``unknown_store``."""
    return await service.create(session, principal, body)


@router.get("")
async def list_promotions(
    principal: PrincipalDep, session: SessionDep, params: CursorParamsDep
) -> Page[PromotionOut]:
    """The current version of the promotions the caller's stores run, newest first."""
    stmt = service.visible(
        sa.select(PromotionVersion).join(Promotion, Promotion.version_id == PromotionVersion.id),
        principal,
    )
    return await paginate(
        session,
        stmt,
        order_by=(Promotion.created_at, Promotion.id),
        params=params,
        map=service.version_out,
        descending=True,
    )


@router.get("/{promotion_id}", responses=problem_responses(404))
async def get_promotion(
    promotion_id: uuid.UUID, principal: PrincipalDep, session: SessionDep
) -> PromotionOut:
    """The promotion's current version."""
    return await service.get(session, principal, promotion_id)


@router.get("/{promotion_id}/versions", responses=problem_responses(404))
async def list_versions(
    promotion_id: uuid.UUID, principal: PrincipalDep, session: SessionDep
) -> list[PromotionOut]:
    """Every version of the promotion, oldest first: what priced the orders naming them."""
    return await service.versions(session, principal, promotion_id)


@router.put(
    "/{promotion_id}",
    dependencies=[Depends(Idempotency())],
    responses=problem_responses(403, 404, 409, 422),
)
async def update_promotion(
    promotion_id: uuid.UUID, body: PromotionUpdate, principal: PromotionWriter, session: SessionDep
) -> PromotionOut:
    """Replace the definition with a new version (``promotions:write``); ``version`` is the
    one being replaced (409 ``version_mismatch`` when another edit came first). Ending a
    promotion is an edit with ``active: false``. Orders placed before keep their version."""
    return await service.update(session, principal, promotion_id, body)
