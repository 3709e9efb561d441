"""Transfers between a merchant's stores, stock across stores, and replenishment.

A transfer is requested by the store that wants the goods, shipped by the store that has them
(a ``transfer_out`` movement: the goods are then in transit, in neither store's on-hand) and
received by the requesting store (a ``transfer_in`` of what actually arrived). What was
shipped and never arrived stays on the transfer line as its discrepancy.
"""

from __future__ import annotations

import math
import uuid
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.ids import new_id
from inventory.models import Product, StockLevel, StockMovement, Store, Transfer, TransferLine
from inventory.stock.service import Change, record_many, require_products
from inventory.transfers.schemas import (
    Replenishment,
    StoreStockOut,
    Suggestion,
    TransferCreate,
    TransferLineOut,
    TransferOut,
    TransferStep,
)
from servicekit.auth import Principal, scoped_to_merchant
from servicekit.errors import (
    Conflict,
    FieldError,
    IllegalState,
    NotFound,
    ValidationFailed,
    VersionMismatch,
)


def transfer_out(transfer: Transfer, lines: Iterable[TransferLine]) -> TransferOut:
    return TransferOut(
        id=transfer.id,
        from_store_id=transfer.from_store_id,
        to_store_id=transfer.to_store_id,
        status=transfer.status,  # type: ignore[arg-type]
        note=transfer.note,
        lines=[
            TransferLineOut(
                product_id=line.product_id,
                requested=line.requested,
                shipped=line.shipped,
                received=line.received,
                discrepancy=(
                    line.received - line.shipped
                    if line.received is not None and line.shipped is not None
                    else None
                ),
            )
            for line in sorted(lines, key=lambda line: line.product_id)
        ],
        version=transfer.version,
        created_at=transfer.created_at,
        shipped_at=transfer.shipped_at,
        received_at=transfer.received_at,
    )


async def lines_of(
    session: AsyncSession, merchant_id: uuid.UUID, transfer_ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[TransferLine]]:
    found: dict[uuid.UUID, list[TransferLine]] = {i: [] for i in transfer_ids}
    if transfer_ids:
        for line in await session.scalars(
            scoped_to_merchant(sa.select(TransferLine), TransferLine, merchant_id).where(
                TransferLine.transfer_id.in_(transfer_ids)
            )
        ):
            found[line.transfer_id].append(line)
    return found


async def get(
    session: AsyncSession,
    principal: Principal,
    store_id: uuid.UUID,
    transfer_id: uuid.UUID,
    *,
    lock: bool = False,
) -> Transfer:
    """The transfer, when the store in the path is one of its two ends (the path's store has
    already been checked against the caller)."""
    stmt = scoped_to_merchant(sa.select(Transfer), Transfer, principal.merchant_id).where(
        Transfer.id == transfer_id,
        sa.or_(Transfer.from_store_id == store_id, Transfer.to_store_id == store_id),
    )
    if lock:
        stmt = stmt.with_for_update()
    transfer = (await session.execute(stmt)).scalar_one_or_none()
    if transfer is None:
        raise NotFound("Transfer not found.", code="transfer_not_found")
    return transfer


async def read(
    session: AsyncSession, principal: Principal, store_id: uuid.UUID, transfer_id: uuid.UUID
) -> TransferOut:
    transfer = await get(session, principal, store_id, transfer_id)
    lines = await lines_of(session, principal.merchant_id, [transfer.id])
    return transfer_out(transfer, lines[transfer.id])


async def request(
    session: AsyncSession, principal: Principal, store_id: uuid.UUID, data: TransferCreate
) -> TransferOut:
    if data.from_store_id == store_id:
        raise ValidationFailed(
            [FieldError("from_store_id", "same_store", "A store cannot supply itself.")]
        )
    # The supplying store need not be the caller's, but it must be an active store of theirs.
    source = await session.scalar(
        scoped_to_merchant(sa.select(Store.status), Store, principal.merchant_id).where(
            Store.store_id == data.from_store_id
        )
    )
    if source != "active":
        raise ValidationFailed(
            [FieldError("from_store_id", "unknown_store", "No such active store.")]
        )
    ids = [line.product_id for line in data.lines]
    if len(set(ids)) != len(ids):
        raise ValidationFailed([FieldError("lines", "duplicate_product", "one line per product.")])
    await require_products(session, principal.merchant_id, ids, "lines[{i}].product_id")
    transfer = Transfer(
        merchant_id=principal.merchant_id,
        id=data.id or new_id(),
        from_store_id=data.from_store_id,
        to_store_id=store_id,
        status="requested",
        note=data.note,
        version=1,
        created_at=datetime.now(UTC),
    )
    try:
        # A savepoint, so the request's transaction survives to store the 409; the row
        # is added inside it, as opening one flushes what is pending.
        async with session.begin_nested():
            session.add(transfer)
            await session.flush()
    except IntegrityError:
        raise Conflict("A transfer with this id exists.", code="duplicate_transfer_id") from None
    lines = [
        TransferLine(
            merchant_id=principal.merchant_id,
            transfer_id=transfer.id,
            product_id=line.product_id,
            requested=line.quantity,
        )
        for line in data.lines
    ]
    session.add_all(lines)
    await session.flush()
    return transfer_out(transfer, lines)


def _quantities(
    data: TransferStep, lines: list[TransferLine], default: dict[uuid.UUID, int]
) -> dict[uuid.UUID, int]:
    known = {line.product_id for line in lines}
    given: dict[uuid.UUID, int] = {}
    errors = []
    for i, line in enumerate(data.lines):
        if line.product_id not in known:
            errors.append(FieldError(f"lines[{i}].product_id", "not_on_transfer", "Not on it."))
        elif line.product_id in given:
            errors.append(FieldError(f"lines[{i}].product_id", "duplicate_product", "Twice."))
        else:
            given[line.product_id] = line.quantity
    if errors:
        raise ValidationFailed(errors)
    return {product_id: given.get(product_id, default[product_id]) for product_id in default}


def _check(transfer: Transfer, version: int, status: str) -> None:
    if transfer.version != version:
        raise VersionMismatch(current_version=transfer.version)
    if transfer.status != status:
        raise IllegalState(f"transfer_{transfer.status}", f"The transfer is {transfer.status}.")


async def ship(
    session: AsyncSession,
    principal: Principal,
    store_id: uuid.UUID,
    transfer_id: uuid.UUID,
    data: TransferStep,
) -> TransferOut:
    transfer = await get(session, principal, store_id, transfer_id, lock=True)
    if transfer.from_store_id != store_id:
        raise IllegalState("not_the_shipping_store", "Only the supplying store ships it.")
    _check(transfer, data.version, "requested")
    lines = (await lines_of(session, transfer.merchant_id, [transfer.id]))[transfer.id]
    shipped = _quantities(data, lines, {line.product_id: line.requested for line in lines})
    now = datetime.now(UTC)
    for line in lines:
        line.shipped = shipped[line.product_id]
    await record_many(
        session,
        transfer.merchant_id,
        transfer.from_store_id,
        [
            Change(
                product_id=product_id,
                kind="transfer_out",
                quantity=-quantity,
                occurred_at=now,
                reason=f"transfer to {transfer.to_store_id}",
                reference=f"transfer {transfer.id}",
                source_key=f"transfer-out:{transfer.id}:{product_id}",
            )
            for product_id, quantity in shipped.items()
            if quantity > 0
        ],
    )
    # The receiving store gets a balance row now, so its stock lists show what is on the way.
    await session.execute(
        pg.insert(StockLevel).on_conflict_do_nothing(
            index_elements=["merchant_id", "store_id", "product_id"]
        ),
        [
            {
                "merchant_id": transfer.merchant_id,
                "store_id": transfer.to_store_id,
                "product_id": product_id,
            }
            for product_id in sorted(shipped)
        ],
    )
    transfer.status = "shipped"
    transfer.shipped_at = now
    transfer.version += 1
    await session.flush()
    return transfer_out(transfer, lines)


async def receive(
    session: AsyncSession,
    principal: Principal,
    store_id: uuid.UUID,
    transfer_id: uuid.UUID,
    data: TransferStep,
) -> TransferOut:
    transfer = await get(session, principal, store_id, transfer_id, lock=True)
    if transfer.to_store_id != store_id:
        raise IllegalState("not_the_receiving_store", "Only the requesting store receives it.")
    _check(transfer, data.version, "shipped")
    lines = (await lines_of(session, transfer.merchant_id, [transfer.id]))[transfer.id]
    received = _quantities(data, lines, {line.product_id: line.shipped or 0 for line in lines})
    now = datetime.now(UTC)
    for line in lines:
        line.received = received[line.product_id]
    await record_many(
        session,
        transfer.merchant_id,
        transfer.to_store_id,
        [
            Change(
                product_id=product_id,
                kind="transfer_in",
                quantity=quantity,
                occurred_at=now,
                reason=f"transfer from {transfer.from_store_id}",
                reference=f"transfer {transfer.id}",
                source_key=f"transfer-in:{transfer.id}:{product_id}",
            )
            for product_id, quantity in received.items()
            if quantity > 0
        ],
    )
    transfer.status = "received"
    transfer.received_at = now
    transfer.version += 1
    await session.flush()
    return transfer_out(transfer, lines)


async def cancel(
    session: AsyncSession,
    principal: Principal,
    store_id: uuid.UUID,
    transfer_id: uuid.UUID,
    version: int,
) -> TransferOut:
    transfer = await get(session, principal, store_id, transfer_id, lock=True)
    _check(transfer, version, "requested")
    transfer.status = "cancelled"
    transfer.version += 1
    await session.flush()
    lines = (await lines_of(session, transfer.merchant_id, [transfer.id]))[transfer.id]
    return transfer_out(transfer, lines)


async def in_transit(
    session: AsyncSession,
    merchant_id: uuid.UUID,
    store_ids: Iterable[uuid.UUID],
    product_ids: Iterable[uuid.UUID] | None = None,
) -> dict[tuple[uuid.UUID, uuid.UUID], int]:
    """Shipped to each store and not yet received, by (store, product)."""
    stmt = (
        scoped_to_merchant(
            sa.select(
                Transfer.to_store_id, TransferLine.product_id, sa.func.sum(TransferLine.shipped)
            ),
            Transfer,
            merchant_id,
        )
        .join(
            TransferLine,
            sa.and_(
                TransferLine.merchant_id == Transfer.merchant_id,
                TransferLine.transfer_id == Transfer.id,
            ),
        )
        .where(Transfer.status == "shipped", Transfer.to_store_id.in_(list(store_ids)))
        .group_by(Transfer.to_store_id, TransferLine.product_id)
    )
    if product_ids is not None:
        stmt = stmt.where(TransferLine.product_id.in_(list(product_ids)))
    return {
        (store, product): int(total or 0) for store, product, total in await session.execute(stmt)
    }


async def with_transit(
    session: AsyncSession, merchant_id: uuid.UUID, levels: list[StockLevel]
) -> list[StoreStockOut]:
    transit = await in_transit(
        session,
        merchant_id,
        {level.store_id for level in levels},
        {level.product_id for level in levels},
    )
    return [
        StoreStockOut(
            store_id=level.store_id,
            product_id=level.product_id,
            on_hand=level.on_hand,
            in_transit=transit.get((level.store_id, level.product_id), 0),
            low_threshold=level.low_threshold,
            low=level.low_threshold is not None and level.on_hand <= level.low_threshold,
        )
        for level in levels
    ]


async def replenishment(
    session: AsyncSession,
    merchant_id: uuid.UUID,
    store_id: uuid.UUID,
    *,
    days: int,
    cover_days: int,
) -> Replenishment:
    """What to order so the store holds ``cover_days`` of its average daily sales over the
    last ``days`` days, and stays above its low-stock thresholds; counting stock on the way."""
    since = datetime.now(UTC) - timedelta(days=days)
    sold_rows = await session.execute(
        scoped_to_merchant(
            sa.select(StockMovement.product_id, -sa.func.sum(StockMovement.quantity)),
            StockMovement,
            merchant_id,
        )
        .where(
            StockMovement.store_id == store_id,
            StockMovement.kind.in_(["sale", "refund_return"]),
            StockMovement.occurred_at >= since,
        )
        .group_by(StockMovement.product_id)
    )
    sold: dict[uuid.UUID, int] = defaultdict(int)
    for product_id, total in sold_rows:
        sold[product_id] = max(int(total or 0), 0)
    levels = {
        level.product_id: level
        for level in await session.scalars(
            scoped_to_merchant(sa.select(StockLevel), StockLevel, merchant_id).where(
                StockLevel.store_id == store_id,
                sa.or_(
                    StockLevel.product_id.in_(list(sold)), StockLevel.low_threshold.is_not(None)
                ),
            )
        )
    }
    product_ids = set(sold) | set(levels)
    products = {
        product.id: product
        for product in await session.scalars(
            scoped_to_merchant(sa.select(Product), Product, merchant_id).where(
                Product.id.in_(list(product_ids)), Product.status == "active"
            )
        )
    }
    transit = await in_transit(session, merchant_id, [store_id], product_ids)
    items: list[Suggestion] = []
    for product_id in sorted(products):
        level = levels.get(product_id)
        on_hand = level.on_hand if level else 0
        threshold = level.low_threshold if level else None
        coming = transit.get((store_id, product_id), 0)
        daily = sold.get(product_id, 0) / days
        target = math.ceil(daily * cover_days)
        if threshold is not None:
            target = max(target, threshold + 1)
        suggested = max(target - on_hand - coming, 0)
        if suggested == 0:
            continue
        packs = products[product_id].packs
        pack = max(packs, key=lambda p: int(p["quantity"])) if packs else None
        items.append(
            Suggestion(
                product_id=product_id,
                sold=sold.get(product_id, 0),
                daily_average=round(daily, 3),
                on_hand=on_hand,
                in_transit=coming,
                low_threshold=threshold,
                target=target,
                suggested=suggested,
                pack_unit=pack["unit"] if pack else None,
                packs=math.ceil(suggested / int(pack["quantity"])) if pack else None,
            )
        )
    return Replenishment(store_id=store_id, days=days, cover_days=cover_days, items=items)
