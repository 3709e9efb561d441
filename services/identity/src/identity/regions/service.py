"""Region logic: HQ (``settings:manage``) defines regions; regional managers see their own."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from identity.common.concurrency import check_version
from identity.deps import Actor
from identity.regions.models import Region
from identity.regions.schemas import RegionCreate, RegionOut, RegionUpdate
from servicekit.errors import Conflict, NotFound
from servicekit.pagination import CursorParams, Page, paginate


def _visible(actor: Actor) -> sa.Select[Region]:
    stmt = sa.select(Region).where(Region.merchant_id == actor.merchant_id)
    if actor.store_ids is not None:
        stmt = stmt.where(Region.id.in_(sorted(actor.region_ids)))
    return stmt


async def _load(
    session: AsyncSession, actor: Actor, region_id: uuid.UUID, *, for_update: bool = False
) -> Region:
    stmt = _visible(actor).where(Region.id == region_id)
    if for_update:
        stmt = stmt.with_for_update(key_share=True).execution_options(populate_existing=True)
    region = await session.scalar(stmt)
    if region is None:
        raise NotFound("Region not found.")
    return region


async def _name_taken(
    session: AsyncSession, merchant_id: uuid.UUID, name: str, but: uuid.UUID | None = None
) -> bool:
    stmt = sa.select(Region.id).where(Region.merchant_id == merchant_id, Region.name == name)
    if but is not None:
        stmt = stmt.where(Region.id != but)
    return (await session.scalar(stmt)) is not None


async def create(session: AsyncSession, actor: Actor, body: RegionCreate) -> RegionOut:
    actor.require("settings:manage")
    if await _name_taken(session, actor.merchant_id, body.name):
        raise Conflict("A region with this name exists.", code="region_name_taken")
    region = Region(merchant_id=actor.merchant_id, name=body.name, status="active")
    session.add(region)
    await session.flush()
    return RegionOut.model_validate(region)


async def list_regions(
    session: AsyncSession, actor: Actor, params: CursorParams
) -> Page[RegionOut]:
    return await paginate(
        session,
        _visible(actor),
        order_by=(Region.name, Region.id),
        params=params,
        map=RegionOut.model_validate,
    )


async def get(session: AsyncSession, actor: Actor, region_id: uuid.UUID) -> RegionOut:
    return RegionOut.model_validate(await _load(session, actor, region_id))


async def update(
    session: AsyncSession, actor: Actor, region_id: uuid.UUID, body: RegionUpdate
) -> RegionOut:
    region = await _load(session, actor, region_id, for_update=True)
    actor.require("settings:manage")
    check_version(region.version, body.version)
    if body.name is not None and body.name != region.name:
        if await _name_taken(session, region.merchant_id, body.name, but=region.id):
            raise Conflict("A region with this name exists.", code="region_name_taken")
        region.name = body.name
    region.version += 1
    await session.flush()
    return RegionOut.model_validate(region)


async def disable(
    session: AsyncSession, actor: Actor, region_id: uuid.UUID, version: int | None
) -> RegionOut:
    region = await _load(session, actor, region_id, for_update=True)
    actor.require("settings:manage")
    check_version(region.version, version)
    if region.status != "disabled":
        region.status = "disabled"
        region.version += 1
        await session.flush()
    return RegionOut.model_validate(region)
