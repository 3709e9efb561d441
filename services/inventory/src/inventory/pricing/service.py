"""HQ price distribution.

HQ prices products for every store or for a store group, now or at a wall-clock time that
each store reads in its own timezone (midnight in Urumqi is not midnight in Shanghai). A
change becomes one row per store with that store's due instant; a background task applies the
rows that are due, each in the same transaction as the store price it sets and the
``inventory.product.price_changed`` event the till's replica follows, so a crash between the
two is impossible and a row is never applied twice (rows are claimed ``FOR UPDATE SKIP
LOCKED``, so several instances share the work). When every store of an all-stores change is
done, the HQ price itself follows, for stores opened later.

HQ's prices override a store's own; what a store's staff may do afterwards is the product's
``store_override`` rule (see the catalog).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.events.inventory import ProductPriceChanged, ProductUpdated
from contracts.ids import new_id
from contracts.money import Money
from inventory.catalog.service import emit, require_merchant_wide, snapshot
from inventory.models import PriceChange, PriceChangeStore, Product, Store, StoreGroup, StorePrice
from inventory.pricing.schemas import (
    PriceChangeCreate,
    PriceChangeOut,
    PriceChangeStoreOut,
    PriceLine,
    StoreGroupCreate,
    StoreGroupOut,
    StoreGroupUpdate,
)
from inventory.tobacco.service import DEFAULT_TIMEZONE
from servicekit.auth import Principal, scoped, scoped_to_merchant
from servicekit.db import Database
from servicekit.errors import (
    Conflict,
    FieldError,
    IllegalState,
    NotFound,
    ValidationFailed,
    VersionMismatch,
)

log = logging.getLogger(__name__)

# --- store groups ----------------------------------------------------------------------------


def group_out(group: StoreGroup) -> StoreGroupOut:
    return StoreGroupOut(
        id=group.id, name=group.name, store_ids=sorted(group.store_ids), version=group.version
    )


async def _require_stores(
    session: AsyncSession, merchant_id: uuid.UUID, store_ids: list[uuid.UUID]
) -> list[uuid.UUID]:
    wanted = sorted(set(store_ids))
    found = set(
        (
            await session.scalars(
                scoped_to_merchant(sa.select(Store.store_id), Store, merchant_id).where(
                    Store.store_id.in_(wanted)
                )
            )
        ).all()
    )
    missing = [i for i, store in enumerate(store_ids) if store not in found]
    if missing:
        raise ValidationFailed(
            [FieldError(f"store_ids[{i}]", "unknown_store", "No such store.") for i in missing]
        )
    return wanted


async def get_group(
    session: AsyncSession, principal: Principal, group_id: uuid.UUID, *, lock: bool = False
) -> StoreGroup:
    stmt = scoped(sa.select(StoreGroup), StoreGroup, principal).where(StoreGroup.id == group_id)
    if lock:
        stmt = stmt.with_for_update()
    group = (await session.execute(stmt)).scalar_one_or_none()
    if group is None:
        raise NotFound("Store group not found.", code="store_group_not_found")
    return group


async def create_group(
    session: AsyncSession, principal: Principal, data: StoreGroupCreate
) -> StoreGroupOut:
    require_merchant_wide(principal)
    stores = await _require_stores(session, principal.merchant_id, data.store_ids)
    group = StoreGroup(
        merchant_id=principal.merchant_id,
        id=data.id or new_id(),
        name=data.name,
        store_ids=stores,
        version=1,
    )
    try:
        # A savepoint, so the request's transaction survives to store the 409; the row
        # is added inside it, as opening one flushes what is pending.
        async with session.begin_nested():
            session.add(group)
            await session.flush()
    except IntegrityError:
        raise Conflict("A group with this id exists.", code="duplicate_store_group_id") from None
    return group_out(group)


async def update_group(
    session: AsyncSession, principal: Principal, group_id: uuid.UUID, data: StoreGroupUpdate
) -> StoreGroupOut:
    require_merchant_wide(principal)
    group = await get_group(session, principal, group_id, lock=True)
    if group.version != data.version:
        raise VersionMismatch(current_version=group.version)
    if data.name is not None:
        group.name = data.name
    if data.store_ids is not None:
        group.store_ids = await _require_stores(session, principal.merchant_id, data.store_ids)
    group.version += 1
    await session.flush()
    return group_out(group)


# --- price changes ---------------------------------------------------------------------------


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or DEFAULT_TIMEZONE)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(DEFAULT_TIMEZONE)


async def change_out(
    session: AsyncSession, principal: Principal, change: PriceChange
) -> PriceChangeOut:
    """The change, with the stores of it the caller may see."""
    rows = (
        await session.scalars(
            scoped(sa.select(PriceChangeStore), PriceChangeStore, principal)
            .where(PriceChangeStore.price_change_id == change.id)
            .order_by(PriceChangeStore.due_at, PriceChangeStore.store_id)
        )
    ).all()
    return PriceChangeOut(
        id=change.id,
        all_stores=change.all_stores,
        store_group_id=change.store_group_id,
        effective_at=change.effective_local,
        status=change.status,  # type: ignore[arg-type]
        lines=[
            PriceLine(
                product_id=uuid.UUID(line["product_id"]),
                price=Money.of(line["amount"], line["currency"]),
            )
            for line in change.lines
        ],
        stores=[
            PriceChangeStoreOut(
                store_id=row.store_id,
                due_at=row.due_at,
                applied_at=row.applied_at,
                cancelled=row.cancelled,
            )
            for row in rows
        ],
        created_at=change.created_at,
    )


async def get_change(
    session: AsyncSession, principal: Principal, change_id: uuid.UUID, *, lock: bool = False
) -> PriceChange:
    stmt = scoped(sa.select(PriceChange), PriceChange, principal).where(PriceChange.id == change_id)
    if lock:
        stmt = stmt.with_for_update()
    change = (await session.execute(stmt)).scalar_one_or_none()
    if change is None:
        raise NotFound("Price change not found.", code="price_change_not_found")
    return change


async def schedule(
    session: AsyncSession, principal: Principal, data: PriceChangeCreate
) -> PriceChangeOut:
    require_merchant_wide(principal)
    merchant_id = principal.merchant_id
    ids = [line.product_id for line in data.lines]
    if len(set(ids)) != len(ids):
        raise ValidationFailed([FieldError("lines", "duplicate_product", "one line per product.")])
    products = {
        p.id: p
        for p in await session.scalars(
            scoped(sa.select(Product), Product, principal).where(Product.id.in_(ids))
        )
    }
    errors = []
    for i, line in enumerate(data.lines):
        product = products.get(line.product_id)
        if product is None:
            errors.append(FieldError(f"lines[{i}].product_id", "unknown_product", "Not found."))
        elif line.price.currency != product.currency:
            errors.append(FieldError(f"lines[{i}].price", "currency_mismatch", product.currency))
    if errors:
        raise ValidationFailed(errors)
    stores_stmt = scoped_to_merchant(
        sa.select(Store.store_id, Store.timezone), Store, merchant_id
    ).where(Store.status == "active")
    if data.store_group_id is not None:
        group = await get_group(session, principal, data.store_group_id)
        stores_stmt = stores_stmt.where(Store.store_id.in_(group.store_ids))
    stores = (await session.execute(stores_stmt)).all()
    now = datetime.now(UTC)
    change = PriceChange(
        merchant_id=merchant_id,
        id=data.id or new_id(),
        store_group_id=data.store_group_id,
        all_stores=data.all_stores,
        effective_local=data.effective_at,
        lines=[
            {
                "product_id": str(line.product_id),
                "amount": line.price.amount,
                "currency": line.price.currency,
            }
            for line in data.lines
        ],
        status="scheduled",
        created_by=principal.subject,
        created_at=now,
    )
    try:
        # A savepoint, so the request's transaction survives to store the 409; the row
        # is added inside it, as opening one flushes what is pending.
        async with session.begin_nested():
            session.add(change)
            await session.flush()
    except IntegrityError:
        raise Conflict(
            "A price change with this id exists.", code="duplicate_price_change_id"
        ) from None
    rows = [
        {
            "merchant_id": merchant_id,
            "price_change_id": change.id,
            "store_id": store_id,
            "due_at": (
                data.effective_at.replace(tzinfo=_zone(timezone))
                if data.effective_at is not None
                else now
            ),
        }
        for store_id, timezone in stores
    ]
    if rows:
        await session.execute(sa.insert(PriceChangeStore), rows)
    if data.effective_at is None:
        await _apply_rows(session, change, [row["store_id"] for row in rows])
    return await change_out(session, principal, change)


async def cancel(
    session: AsyncSession, principal: Principal, change_id: uuid.UUID
) -> PriceChangeOut:
    """Stop the stores not yet switched; the ones already on the new price stay there."""
    require_merchant_wide(principal)
    change = await get_change(session, principal, change_id, lock=True)
    if change.status != "scheduled":
        raise IllegalState(f"price_change_{change.status}", f"The change is {change.status}.")
    await session.execute(
        scoped_to_merchant(sa.update(PriceChangeStore), PriceChangeStore, change.merchant_id)
        .where(
            PriceChangeStore.price_change_id == change.id,
            PriceChangeStore.applied_at.is_(None),
        )
        .values(cancelled=True)
        .execution_options(synchronize_session=False)
    )
    change.status = "cancelled"
    await session.flush()
    return await change_out(session, principal, change)


async def _apply_rows(
    session: AsyncSession, change: PriceChange, store_ids: list[uuid.UUID]
) -> None:
    """Set the change's prices in ``store_ids`` and tell the tills; the rows are the caller's
    (locked or just inserted)."""
    now = datetime.now(UTC)
    merchant_id = change.merchant_id
    lines = sorted(change.lines, key=lambda line: line["product_id"])
    products = {
        p.id: p
        for p in await session.scalars(
            scoped_to_merchant(sa.select(Product), Product, merchant_id)
            .where(Product.id.in_([uuid.UUID(line["product_id"]) for line in lines]))
            .order_by(Product.id)
            .with_for_update()
        )
    }
    for store_id in sorted(store_ids):
        for line in lines:
            product = products.get(uuid.UUID(line["product_id"]))
            if product is None or product.currency != line["currency"]:
                continue  # the product changed currency since: HQ prices it again
            stmt = pg.insert(StorePrice).values(
                merchant_id=merchant_id,
                product_id=product.id,
                store_id=store_id,
                currency=line["currency"],
                price=line["amount"],
            )
            await session.execute(
                stmt.on_conflict_do_update(
                    index_elements=["merchant_id", "product_id", "store_id"],
                    set_={"price": stmt.excluded.price, "currency": stmt.excluded.currency},
                )
            )
            product.version += 1
            product.updated_at = now
            await emit(
                session,
                product,
                ProductPriceChanged(
                    product_id=product.id,
                    version=product.version,
                    store_id=store_id,
                    price=Money.of(line["amount"], line["currency"]),
                ),
                store_id=store_id,
            )
    if store_ids:
        await session.execute(
            scoped_to_merchant(sa.update(PriceChangeStore), PriceChangeStore, merchant_id)
            .where(
                PriceChangeStore.price_change_id == change.id,
                PriceChangeStore.store_id.in_(store_ids),
            )
            .values(applied_at=now)
            .execution_options(synchronize_session=False)
        )
    pending = await session.scalar(
        scoped_to_merchant(sa.select(sa.func.count()), PriceChangeStore, merchant_id).where(
            PriceChangeStore.price_change_id == change.id,
            PriceChangeStore.applied_at.is_(None),
            sa.not_(PriceChangeStore.cancelled),
        )
    )
    if pending == 0 and change.status == "scheduled":
        change.status = "applied"
        if change.all_stores:
            for line in lines:
                product = products.get(uuid.UUID(line["product_id"]))
                if product is None or product.currency != line["currency"]:
                    continue
                product.price = int(line["amount"])
                product.version += 1
                product.updated_at = now
                await emit(session, product, ProductUpdated(**snapshot(product)))
    await session.flush()


async def apply_due(session: AsyncSession, now: datetime, *, limit: int = 200) -> int:
    """Apply the store rows due by ``now``, across merchants; the rows of one change go
    together. Returns how many store rows were applied."""
    due = (
        await session.execute(
            sa.select(
                PriceChangeStore.merchant_id,
                PriceChangeStore.price_change_id,
                PriceChangeStore.store_id,
            )
            .where(
                PriceChangeStore.applied_at.is_(None),
                sa.not_(PriceChangeStore.cancelled),
                PriceChangeStore.due_at <= now,
            )
            .order_by(PriceChangeStore.due_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    ).all()
    by_change: dict[tuple[uuid.UUID, uuid.UUID], list[uuid.UUID]] = {}
    for merchant_id, change_id, store_id in due:
        by_change.setdefault((merchant_id, change_id), []).append(store_id)
    for (merchant_id, change_id), store_ids in by_change.items():
        change = await session.scalar(
            scoped_to_merchant(sa.select(PriceChange), PriceChange, merchant_id)
            .where(PriceChange.id == change_id)
            .with_for_update()
        )
        if change is None:
            continue
        try:
            async with session.begin_nested():
                await _apply_rows(session, change, store_ids)
        except Exception:
            # Its rows stay due and are tried again; the other changes still apply.
            log.exception("price change %s of merchant %s failed", change_id, merchant_id)
    return len(due)


async def run_scheduler(database: Database, interval: float) -> None:
    """Apply due price changes every ``interval`` seconds until cancelled."""
    while True:
        try:
            while True:
                async with database.transaction() as session:
                    applied = await apply_due(session, datetime.now(UTC))
                if applied == 0:
                    break
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("applying due price changes failed; retrying")
        await asyncio.sleep(interval)


async def start_scheduler(runtime: Any) -> None:
    interval = float(getattr(runtime.settings, "price_change_interval", 30.0))
    runtime.extras["price_scheduler"] = asyncio.create_task(
        run_scheduler(runtime.database, interval), name="inventory-price-changes"
    )


async def stop_scheduler(runtime: Any) -> None:
    task = runtime.extras.get("price_scheduler")
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
