"""Stocktaking: a session freezes each product's book quantity, devices add their counts
concurrently (each entry is an atomic increment, so two scanners on one aisle add up), the
report compares book and counted at cost, and a manager's approval posts every count to the
ledger in one transaction.

Sales during the count follow the ledger's rule (Square's): a product's count is dated at its
last entry, so a sale rung up before the product was counted is absorbed by the count, and
one after it still comes off the counted figure.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.ids import new_id
from contracts.money import Money
from inventory.catalog.service import sees_cost
from inventory.categories.service import require_category, subtree
from inventory.models import (
    Product,
    ProductBarcode,
    StockLevel,
    StockMovement,
    Stocktake,
    StocktakeEntry,
    StocktakeLine,
)
from inventory.stock.service import Change, record_many
from inventory.stocktakes.schemas import (
    CountedLine,
    CountsIn,
    CountsOut,
    DiscrepancyLine,
    DiscrepancyReport,
    StocktakeCreate,
    StocktakeOut,
)
from servicekit.auth import Principal, Role, scoped, scoped_to_merchant
from servicekit.errors import (
    Conflict,
    FieldError,
    Forbidden,
    IllegalState,
    NotFound,
    ValidationFailed,
    VersionMismatch,
)

MANAGERS = frozenset({Role.STORE_MANAGER, Role.REGIONAL_MANAGER, Role.HQ_ADMIN})


async def summary(session: AsyncSession, stocktake: Stocktake) -> StocktakeOut:
    total, counted = (
        await session.execute(
            scoped_to_merchant(
                sa.select(sa.func.count(), sa.func.count(StocktakeLine.counted)),
                StocktakeLine,
                stocktake.merchant_id,
            ).where(StocktakeLine.stocktake_id == stocktake.id)
        )
    ).one()
    return StocktakeOut(
        id=stocktake.id,
        store_id=stocktake.store_id,
        category_id=stocktake.category_id,
        status=stocktake.status,  # type: ignore[arg-type]
        started_at=stocktake.started_at,
        approved_at=stocktake.approved_at,
        approved_by=stocktake.approved_by,
        products=int(total),
        counted=int(counted),
        version=stocktake.version,
    )


async def get(
    session: AsyncSession,
    principal: Principal,
    store_id: uuid.UUID,
    stocktake_id: uuid.UUID,
    *,
    lock: bool = False,
    share: bool = False,
) -> Stocktake:
    stmt = scoped(sa.select(Stocktake), Stocktake, principal).where(
        Stocktake.id == stocktake_id, Stocktake.store_id == store_id
    )
    if lock:
        stmt = stmt.with_for_update()
    elif share:
        stmt = stmt.with_for_update(read=True)
    stocktake = (await session.execute(stmt)).scalar_one_or_none()
    if stocktake is None:
        raise NotFound("Stocktake not found.", code="stocktake_not_found")
    return stocktake


async def read(
    session: AsyncSession, principal: Principal, store_id: uuid.UUID, stocktake_id: uuid.UUID
) -> StocktakeOut:
    return await summary(session, await get(session, principal, store_id, stocktake_id))


async def start(
    session: AsyncSession, principal: Principal, store_id: uuid.UUID, data: StocktakeCreate
) -> StocktakeOut:
    merchant_id = principal.merchant_id
    categories: list[uuid.UUID] | None = None
    if data.category_id is not None:
        await require_category(session, merchant_id, data.category_id, "category_id")
        categories = await subtree(session, merchant_id, data.category_id)
    stocktake = Stocktake(
        merchant_id=merchant_id,
        id=data.id or new_id(),
        store_id=store_id,
        category_id=data.category_id,
        status="open",
        started_at=datetime.now(UTC),
        version=1,
    )
    try:
        # The row is added inside the savepoint: opening one flushes what is pending.
        async with session.begin_nested():
            session.add(stocktake)
            await session.flush()
    except IntegrityError as exc:
        if "uq_stocktakes_open_store" in str(exc.orig):
            raise Conflict(
                "The store already has an open stocktake.", code="stocktake_already_open"
            ) from None
        raise Conflict("A stocktake with this id exists.", code="duplicate_stocktake_id") from None
    # The book quantity of every product in scope, frozen now; one statement.
    products = scoped_to_merchant(
        sa.select(
            Product.merchant_id,
            sa.literal(stocktake.id, pg.UUID(as_uuid=True)),
            Product.id,
            sa.func.coalesce(StockLevel.on_hand, 0),
        ),
        Product,
        merchant_id,
    ).outerjoin(
        StockLevel,
        sa.and_(
            StockLevel.merchant_id == Product.merchant_id,
            StockLevel.product_id == Product.id,
            StockLevel.store_id == store_id,
        ),
    )
    if categories is not None:
        products = products.where(Product.category_id.in_(categories))
    await session.execute(
        sa.insert(StocktakeLine).from_select(
            ["merchant_id", "stocktake_id", "product_id", "book_quantity"], products
        )
    )
    return await summary(session, stocktake)


async def _resolve(
    session: AsyncSession, merchant_id: uuid.UUID, data: CountsIn
) -> dict[uuid.UUID, int]:
    """Each product's quantity in this batch, barcodes resolved (a case barcode counts its
    pack quantity)."""
    codes = {line.barcode for line in data.lines if line.barcode is not None}
    by_code: dict[str, tuple[uuid.UUID, int]] = {}
    if codes:
        rows = await session.execute(
            scoped_to_merchant(
                sa.select(
                    ProductBarcode.barcode, ProductBarcode.product_id, ProductBarcode.pack_quantity
                ),
                ProductBarcode,
                merchant_id,
            ).where(ProductBarcode.barcode.in_(codes))
        )
        by_code = {code: (product_id, quantity) for code, product_id, quantity in rows}
    totals: dict[uuid.UUID, int] = defaultdict(int)
    errors: list[FieldError] = []
    for i, line in enumerate(data.lines):
        if line.barcode is not None:
            if line.barcode not in by_code:
                errors.append(FieldError(f"lines[{i}].barcode", "unknown_barcode", "No product."))
                continue
            product_id, per_pack = by_code[line.barcode]
            totals[product_id] += line.quantity * per_pack
        else:
            assert line.product_id is not None
            totals[line.product_id] += line.quantity
    if errors:
        raise ValidationFailed(errors)
    return totals


async def add_counts(
    session: AsyncSession,
    principal: Principal,
    store_id: uuid.UUID,
    stocktake_id: uuid.UUID,
    data: CountsIn,
) -> CountsOut:
    # A shared lock: devices count side by side, while approval (exclusive) waits for them.
    stocktake = await get(session, principal, store_id, stocktake_id, share=True)
    if stocktake.status != "open":
        raise IllegalState(f"stocktake_{stocktake.status}", "The stocktake takes no counts.")
    totals = await _resolve(session, principal.merchant_id, data)
    counted_at = data.counted_at or datetime.now(UTC)
    if stocktake.category_id is None:
        # A product created after the start joins a full count with its book quantity now.
        await session.execute(
            pg.insert(StocktakeLine)
            .from_select(
                ["merchant_id", "stocktake_id", "product_id", "book_quantity"],
                scoped_to_merchant(
                    sa.select(
                        Product.merchant_id,
                        sa.literal(stocktake.id, pg.UUID(as_uuid=True)),
                        Product.id,
                        sa.func.coalesce(
                            sa.select(StockLevel.on_hand)
                            .where(
                                StockLevel.merchant_id == Product.merchant_id,
                                StockLevel.store_id == store_id,
                                StockLevel.product_id == Product.id,
                            )
                            .scalar_subquery(),
                            0,
                        ),
                    ),
                    Product,
                    principal.merchant_id,
                ).where(Product.id.in_(list(totals))),
            )
            .on_conflict_do_nothing()
        )
    errors: list[FieldError] = []
    result: list[CountedLine] = []
    # Product order, so that two devices' batches never deadlock on each other's lines.
    for product_id in sorted(totals):
        quantity = totals[product_id]
        line = StocktakeLine.__table__.c  # type: ignore[attr-defined]
        row = (
            await session.execute(
                sa.update(StocktakeLine)
                .where(
                    line.merchant_id == principal.merchant_id,
                    line.stocktake_id == stocktake.id,
                    line.product_id == product_id,
                    sa.func.coalesce(line.counted, 0) + quantity >= 0,
                )
                .values(
                    counted=sa.func.coalesce(line.counted, 0) + quantity,
                    last_counted_at=sa.func.greatest(
                        sa.func.coalesce(line.last_counted_at, counted_at), counted_at
                    ),
                )
                .returning(line.counted)
                .execution_options(synchronize_session=False)
            )
        ).one_or_none()
        if row is None:
            exists = await session.scalar(
                scoped_to_merchant(
                    sa.select(StocktakeLine.product_id), StocktakeLine, principal.merchant_id
                ).where(
                    StocktakeLine.stocktake_id == stocktake.id,
                    StocktakeLine.product_id == product_id,
                )
            )
            code, message = (
                ("negative_count", "would take the count below zero.")
                if exists
                else ("not_in_stocktake", "The product is not part of this count.")
            )
            errors.append(FieldError(f"lines[{product_id}]", code, message))
            continue
        result.append(CountedLine(product_id=product_id, counted=int(row[0])))
        session.add(
            StocktakeEntry(
                id=new_id(),
                merchant_id=principal.merchant_id,
                stocktake_id=stocktake.id,
                product_id=product_id,
                quantity=quantity,
                device_id=data.device_id,
                counted_at=counted_at,
                counted_by=principal.subject,
            )
        )
    if errors:
        raise ValidationFailed(errors)
    await session.flush()
    return CountsOut(stocktake_id=stocktake.id, lines=result)


async def report(
    session: AsyncSession,
    principal: Principal,
    store_id: uuid.UUID,
    stocktake_id: uuid.UUID,
    *,
    only_differences: bool = False,
) -> DiscrepancyReport:
    stocktake = await get(session, principal, store_id, stocktake_id)
    merchant_id = principal.merchant_id
    moved = (
        sa.select(sa.func.coalesce(sa.func.sum(StockMovement.quantity), 0))
        .where(
            StockMovement.merchant_id == merchant_id,
            StockMovement.store_id == stocktake.store_id,
            StockMovement.product_id == StocktakeLine.product_id,
            StockMovement.kind != "count",
            StockMovement.occurred_at > stocktake.started_at,
            StockMovement.occurred_at <= StocktakeLine.last_counted_at,
        )
        .scalar_subquery()
    )
    rows = (
        await session.execute(
            scoped_to_merchant(
                sa.select(
                    StocktakeLine, Product.sku, Product.name, Product.cost, Product.currency, moved
                ),
                StocktakeLine,
                merchant_id,
            )
            .join(
                Product,
                sa.and_(
                    Product.merchant_id == StocktakeLine.merchant_id,
                    Product.id == StocktakeLine.product_id,
                ),
            )
            .where(StocktakeLine.stocktake_id == stocktake.id)
            .order_by(Product.sku)
        )
    ).all()
    show_cost = sees_cost(principal)
    lines: list[DiscrepancyLine] = []
    totals: dict[str, int] = defaultdict(int)
    uncounted = 0
    for line, sku, name, cost, currency, movements in rows:
        moved_since = int(movements) if line.counted is not None else 0
        expected = line.book_quantity + moved_since
        difference = line.counted - expected if line.counted is not None else None
        if line.counted is None:
            uncounted += 1
        if only_differences and not difference:
            continue
        value = None
        if show_cost and cost is not None and difference is not None:
            value = Money.of(difference * cost, currency)
            totals[currency] += difference * cost
        lines.append(
            DiscrepancyLine(
                product_id=line.product_id,
                sku=sku,
                name=name,
                book_quantity=line.book_quantity,
                moved_since_start=moved_since,
                expected=expected,
                counted=line.counted,
                difference=difference,
                unit_cost=Money.of(cost, currency) if show_cost and cost is not None else None,
                difference_value=value,
            )
        )
    return DiscrepancyReport(
        stocktake=await summary(session, stocktake),
        lines=lines,
        uncounted=uncounted,
        total_difference_value=[Money.of(v, c) for c, v in sorted(totals.items())]
        if show_cost
        else [],
    )


def require_manager(principal: Principal) -> None:
    if principal.role not in MANAGERS:
        raise Forbidden(
            "Approving a stocktake needs a store manager or above.",
            code="manager_approval_required",
        )


async def approve(
    session: AsyncSession,
    principal: Principal,
    store_id: uuid.UUID,
    stocktake_id: uuid.UUID,
    version: int,
) -> StocktakeOut:
    require_manager(principal)
    stocktake = await get(session, principal, store_id, stocktake_id, lock=True)
    if stocktake.version != version:
        raise VersionMismatch(current_version=stocktake.version)
    if stocktake.status != "open":
        raise IllegalState(f"stocktake_{stocktake.status}", "The stocktake is closed.")
    counted = (
        await session.scalars(
            scoped_to_merchant(
                sa.select(StocktakeLine), StocktakeLine, principal.merchant_id
            ).where(StocktakeLine.stocktake_id == stocktake.id, StocktakeLine.counted.is_not(None))
        )
    ).all()
    # Uncounted products keep their stock: nobody looked at them.
    await record_many(
        session,
        stocktake.merchant_id,
        stocktake.store_id,
        [
            Change(
                product_id=line.product_id,
                kind="count",
                quantity=int(line.counted or 0),
                occurred_at=line.last_counted_at or stocktake.started_at,
                reason="stocktake",
                reference=f"stocktake {stocktake.id}",
                source_key=f"stocktake:{stocktake.id}:{line.product_id}",
            )
            for line in counted
        ],
    )
    stocktake.status = "approved"
    stocktake.approved_at = datetime.now(UTC)
    stocktake.approved_by = principal.subject
    stocktake.version += 1
    await session.flush()
    return await summary(session, stocktake)


async def cancel(
    session: AsyncSession,
    principal: Principal,
    store_id: uuid.UUID,
    stocktake_id: uuid.UUID,
    version: int,
) -> StocktakeOut:
    stocktake = await get(session, principal, store_id, stocktake_id, lock=True)
    if stocktake.version != version:
        raise VersionMismatch(current_version=stocktake.version)
    if stocktake.status != "open":
        raise IllegalState(f"stocktake_{stocktake.status}", "The stocktake is closed.")
    stocktake.status = "cancelled"
    stocktake.version += 1
    await session.flush()
    return await summary(session, stocktake)
