"""Promotions: versioned definitions, scoped to the stores of whoever made them.

HQ (a caller whose token reaches every store) makes promotions for every store or some; a
caller limited to some stores makes them only for stores within reach, and changes only
promotions wholly within reach. Everyone sees the promotions of their stores and the
merchant-wide ones. An edit never changes a version: it adds the next one and points the
promotion at it, so an order's stored version ids keep pricing as they did.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.ids import new_id
from orders.models import Promotion, PromotionVersion, Store
from orders.promotions.engine import PromotionInput
from orders.promotions.schemas import PromotionIn, PromotionOut, PromotionUpdate
from servicekit.auth import Principal
from servicekit.errors import FieldError, Forbidden, NotFound, ValidationFailed, VersionMismatch


def version_out(version: PromotionVersion) -> PromotionOut:
    return PromotionOut(
        **PromotionIn.model_validate(version.definition).model_dump(),
        id=version.promotion_id,
        version=version.version,
        version_id=version.id,
        created_at=version.created_at,
    )


def visible(stmt: sa.Select[Any], principal: Principal) -> sa.Select[Any]:
    """Restrict to the caller's merchant and to promotions for every store or for at least
    one of the caller's stores."""
    stmt = stmt.where(Promotion.merchant_id == principal.merchant_id)
    if principal.store_ids is not None:
        stmt = stmt.where(
            Promotion.store_ids.is_(None)
            | Promotion.store_ids.has_any(pg.array(sorted(str(s) for s in principal.store_ids)))
        )
    return stmt


def _stores_of(store_ids: Iterable[str] | None) -> set[uuid.UUID] | None:
    return None if store_ids is None else {uuid.UUID(s) for s in store_ids}


def _check_reach(principal: Principal, store_ids: set[uuid.UUID] | None) -> None:
    if principal.store_ids is None:
        return
    if store_ids is None:
        raise Forbidden(
            "Only a caller reaching every store may run a promotion in every store.",
            code="promotion_scope",
        )
    outside = store_ids - principal.store_ids
    if outside:
        raise Forbidden(
            "The promotion names stores outside the caller's reach.",
            code="promotion_scope",
            store_ids=sorted(str(s) for s in outside),
        )


async def _check_stores(
    session: AsyncSession, merchant_id: uuid.UUID, store_ids: list[uuid.UUID] | None
) -> None:
    if not store_ids:
        return
    known = set(
        (
            await session.execute(
                sa.select(Store.store_id).where(
                    Store.merchant_id == merchant_id, Store.store_id.in_(store_ids)
                )
            )
        ).scalars()
    )
    errors = [
        FieldError(f"store_ids[{i}]", "unknown_store", "No such store.")
        for i, store_id in enumerate(store_ids)
        if store_id not in known
    ]
    if errors:
        raise ValidationFailed(errors, "No such store for this merchant.", code="unknown_store")


def _stored(body: PromotionIn) -> dict[str, Any]:
    # Only the definition's own fields: an update's expected ``version`` is not part of it.
    return body.model_dump(mode="json", include=set(PromotionIn.model_fields))


async def create(session: AsyncSession, principal: Principal, body: PromotionIn) -> PromotionOut:
    _check_reach(principal, None if body.store_ids is None else set(body.store_ids))
    await _check_stores(session, principal.merchant_id, body.store_ids)
    promotion_id = new_id()
    version = PromotionVersion(
        id=new_id(),
        merchant_id=principal.merchant_id,
        promotion_id=promotion_id,
        version=1,
        definition=_stored(body),
        created_by=principal.subject,
    )
    session.add(version)
    session.add(
        Promotion(
            merchant_id=principal.merchant_id,
            id=promotion_id,
            version=1,
            version_id=version.id,
            kind=body.rule.kind,
            active=body.active,
            store_ids=None if body.store_ids is None else [str(s) for s in body.store_ids],
        )
    )
    await session.flush()
    await session.refresh(version)
    return version_out(version)


async def _visible_promotion(
    session: AsyncSession, principal: Principal, promotion_id: uuid.UUID, *, for_update: bool
) -> Promotion:
    stmt = visible(sa.select(Promotion), principal).where(Promotion.id == promotion_id)
    if for_update:
        stmt = stmt.with_for_update()
    promotion: Promotion | None = (await session.execute(stmt)).scalar_one_or_none()
    if promotion is None:
        raise NotFound("Promotion not found.")
    return promotion


async def update(
    session: AsyncSession, principal: Principal, promotion_id: uuid.UUID, body: PromotionUpdate
) -> PromotionOut:
    promotion = await _visible_promotion(session, principal, promotion_id, for_update=True)
    _check_reach(principal, _stores_of(promotion.store_ids))
    _check_reach(principal, None if body.store_ids is None else set(body.store_ids))
    if body.version != promotion.version:
        raise VersionMismatch(current_version=promotion.version)
    await _check_stores(session, principal.merchant_id, body.store_ids)
    version = PromotionVersion(
        id=new_id(),
        merchant_id=principal.merchant_id,
        promotion_id=promotion.id,
        version=promotion.version + 1,
        definition=_stored(body),
        created_by=principal.subject,
    )
    session.add(version)
    promotion.version = version.version
    promotion.version_id = version.id
    promotion.kind = body.rule.kind
    promotion.active = body.active
    promotion.store_ids = None if body.store_ids is None else [str(s) for s in body.store_ids]
    promotion.updated_at = datetime.now(UTC)
    await session.flush()
    await session.refresh(version)
    return version_out(version)


async def get(session: AsyncSession, principal: Principal, promotion_id: uuid.UUID) -> PromotionOut:
    promotion = await _visible_promotion(session, principal, promotion_id, for_update=False)
    version = await session.get(PromotionVersion, promotion.version_id)
    assert version is not None
    return version_out(version)


async def versions(
    session: AsyncSession, principal: Principal, promotion_id: uuid.UUID
) -> list[PromotionOut]:
    await _visible_promotion(session, principal, promotion_id, for_update=False)
    rows = await session.execute(
        sa.select(PromotionVersion)
        .where(
            PromotionVersion.merchant_id == principal.merchant_id,
            PromotionVersion.promotion_id == promotion_id,
        )
        .order_by(PromotionVersion.version)
    )
    return [version_out(v) for v in rows.scalars()]


def _input(version: PromotionVersion) -> PromotionInput:
    return PromotionInput(
        version.promotion_id, version.id, PromotionIn.model_validate(version.definition)
    )


async def current_for_store(
    session: AsyncSession, merchant_id: uuid.UUID, store_id: uuid.UUID
) -> list[PromotionInput]:
    """The current version of every active promotion that runs in ``store_id``."""
    rows = await session.execute(
        sa.select(PromotionVersion)
        .join(Promotion, Promotion.version_id == PromotionVersion.id)
        .where(
            Promotion.merchant_id == merchant_id,
            Promotion.active.is_(True),
            Promotion.store_ids.is_(None) | Promotion.store_ids.has_key(str(store_id)),
        )
    )
    return [_input(v) for v in rows.scalars()]


async def by_version_ids(
    session: AsyncSession, merchant_id: uuid.UUID, version_ids: list[uuid.UUID]
) -> list[PromotionInput]:
    """The named versions (an order's stored inputs), whatever the promotions became since."""
    if not version_ids:
        return []
    rows = await session.execute(
        sa.select(PromotionVersion).where(
            PromotionVersion.merchant_id == merchant_id, PromotionVersion.id.in_(version_ids)
        )
    )
    return [_input(v) for v in rows.scalars()]
