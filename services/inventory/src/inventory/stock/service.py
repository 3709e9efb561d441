"""The stock ledger: every change is a movement, and on-hand follows from the movements.

On-hand is the latest physical count (by the client's ``occurred_at``) plus the changes dated
after it (Square's model): a late offline sale dated before a count is absorbed by that count.
``stock_levels`` holds the result for each store and product and is updated in the same
transaction as the movement, under a row lock, so concurrent sales stay exact. A sale is never
refused: on-hand may go negative, and the level says so.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import EventEnvelope
from contracts.events.inventory import StockLow
from contracts.ids import new_id
from contracts.registry import make_envelope
from inventory.models import Product, StockLevel, StockMovement
from inventory.stock.schemas import MovementKind, MovementOut, StockInLine, StockLevelOut
from servicekit.auth import scoped_to_merchant
from servicekit.errors import FieldError, NotFound, ValidationFailed
from servicekit.outbox import add_event, add_events

PRODUCER = "inventory"
_MOVEMENTS = cast(sa.Table, StockMovement.__table__)
#: A recorded movement as the ledger returned it (the columns of ``stock_movements``).
Movement = sa.Row[Any]
#: The most one line of a document or an order may move: beyond it a figure is a mistake.
MAX_QUANTITY = 10**9


@dataclass(frozen=True, slots=True)
class Change:
    """One movement to record: ``quantity`` is signed, or the counted figure for a count."""

    product_id: uuid.UUID
    kind: MovementKind
    quantity: int
    occurred_at: datetime
    reason: str | None = None
    reference: str | None = None
    source_key: str | None = None


async def known_products(
    session: AsyncSession, merchant_id: uuid.UUID, product_ids: Iterable[uuid.UUID]
) -> set[uuid.UUID]:
    wanted = set(product_ids)
    if not wanted:
        return set()
    rows = await session.execute(
        scoped_to_merchant(sa.select(Product.id), Product, merchant_id).where(
            Product.id.in_(wanted)
        )
    )
    return {row[0] for row in rows}


async def require_products(
    session: AsyncSession, merchant_id: uuid.UUID, product_ids: list[uuid.UUID], field: str
) -> None:
    """422 naming each line whose product is not in the merchant's catalog."""
    found = await known_products(session, merchant_id, product_ids)
    errors = [
        FieldError(field.format(i=i), "unknown_product", "No such product in the catalog.")
        for i, product_id in enumerate(product_ids)
        if product_id not in found
    ]
    if errors:
        raise ValidationFailed(errors)


async def in_singles(
    session: AsyncSession, merchant_id: uuid.UUID, lines: list[StockInLine]
) -> list[int]:
    """Each line's quantity in singles: a line in packs ('case') times the pack's size."""
    units = {line.product_id for line in lines if line.unit is not None}
    packs: dict[uuid.UUID, tuple[str, list[dict[str, Any]]]] = {}
    if units:
        rows = await session.execute(
            scoped_to_merchant(
                sa.select(Product.id, Product.unit, Product.packs), Product, merchant_id
            ).where(Product.id.in_(units))
        )
        packs = {product_id: (unit, product_packs) for product_id, unit, product_packs in rows}
    result: list[int] = []
    errors: list[FieldError] = []
    for i, line in enumerate(lines):
        if line.unit is None:
            result.append(line.quantity)
            continue
        sold_unit, product_packs = packs.get(line.product_id, ("", []))
        size = (
            1
            if line.unit == sold_unit
            else next((int(p["quantity"]) for p in product_packs if p["unit"] == line.unit), None)
        )
        if size is None:
            errors.append(FieldError(f"lines[{i}].unit", "unknown_pack", "No such pack."))
        elif line.quantity * size > MAX_QUANTITY:
            errors.append(FieldError(f"lines[{i}].quantity", "out_of_range", "too many."))
        else:
            result.append(line.quantity * size)
    if errors:
        raise ValidationFailed(errors)
    return result


async def _lock_levels(
    session: AsyncSession,
    merchant_id: uuid.UUID,
    store_id: uuid.UUID,
    product_ids: Iterable[uuid.UUID],
) -> dict[uuid.UUID, StockLevel]:
    """The balances of ``product_ids`` in the store, created at zero where missing and locked
    in product order, so that two concurrent documents never deadlock on each other."""
    ids = sorted(set(product_ids))
    # The executemany form keeps one cached statement (sent as one multi-row INSERT) however
    # many lines there are; an inline multi-row VALUES would be compiled again every time.
    await session.execute(
        pg.insert(StockLevel).on_conflict_do_nothing(
            index_elements=["merchant_id", "store_id", "product_id"]
        ),
        [
            {"merchant_id": merchant_id, "store_id": store_id, "product_id": product_id}
            for product_id in ids
        ],
    )
    levels = await session.scalars(
        scoped_to_merchant(sa.select(StockLevel), StockLevel, merchant_id)
        .where(StockLevel.store_id == store_id, StockLevel.product_id.in_(ids))
        .order_by(StockLevel.product_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return {level.product_id: level for level in levels}


async def _changes_after(
    session: AsyncSession,
    merchant_id: uuid.UUID,
    store_id: uuid.UUID,
    counts: list[Change],
) -> dict[tuple[uuid.UUID, datetime], int]:
    """For each count, the sum of the other movements dated after it: what moved on the shelf
    between the count and now."""
    moments: dict[datetime, set[uuid.UUID]] = {}
    for change in counts:
        moments.setdefault(change.occurred_at, set()).add(change.product_id)
    later: dict[tuple[uuid.UUID, datetime], int] = {}
    for moment, product_ids in moments.items():
        rows = await session.execute(
            scoped_to_merchant(
                sa.select(StockMovement.product_id, sa.func.sum(StockMovement.quantity)),
                StockMovement,
                merchant_id,
            )
            .where(
                StockMovement.store_id == store_id,
                StockMovement.product_id.in_(product_ids),
                StockMovement.kind != "count",
                StockMovement.occurred_at > moment,
            )
            .group_by(StockMovement.product_id)
        )
        for product_id, total in rows:
            later[(product_id, moment)] = int(total)
    return later


async def _recorded_sources(
    session: AsyncSession, merchant_id: uuid.UUID, changes: list[Change]
) -> set[str]:
    keys = {change.source_key for change in changes if change.source_key is not None}
    if not keys:
        return set()
    rows = await session.execute(
        scoped_to_merchant(sa.select(StockMovement.source_key), StockMovement, merchant_id).where(
            StockMovement.source_key.in_(keys)
        )
    )
    return {row[0] for row in rows if row[0] is not None}


async def record(
    session: AsyncSession,
    merchant_id: uuid.UUID,
    store_id: uuid.UUID,
    change: Change,
    *,
    causation: uuid.UUID | None = None,
) -> Movement | None:
    """Append ``change`` to the ledger and update the balance; ``None`` when a movement with
    the same ``source_key`` is already recorded (the effect happened before)."""
    movements = await record_many(session, merchant_id, store_id, [change], causation=causation)
    return movements[0] if movements else None


@dataclass(slots=True)
class _Balance:
    """A balance as the batch leaves it, applied to the locked row only once its movements
    are in the ledger."""

    on_hand: int
    last_count_at: datetime | None


async def record_many(
    session: AsyncSession,
    merchant_id: uuid.UUID,
    store_id: uuid.UUID,
    changes: list[Change],
    *,
    causation: uuid.UUID | None = None,
) -> list[Movement]:
    """Append ``changes`` to the ledger and update the balances, a handful of statements for
    the whole batch; changes whose ``source_key`` is already recorded are skipped (their
    effect happened before). The movements recorded come back in the order of ``changes``."""
    if not changes:
        return []
    levels = await _lock_levels(session, merchant_id, store_id, (c.product_id for c in changes))
    products = [c.product_id for c in changes]
    # One change per product (what event handlers send) lets the insert itself drop a
    # duplicate: that product's balance is then left alone. Otherwise look the keys up first,
    # under the balance locks, so a concurrent copy of the same event has committed or not
    # begun.
    keyed = any(c.source_key is not None for c in changes)
    done = (
        await _recorded_sources(session, merchant_id, changes)
        if keyed and len(set(products)) != len(products)
        else set()
    )
    counts = [c for c in changes if c.kind == "count"]
    later = await _changes_after(session, merchant_id, store_id, counts) if counts else {}

    balances = {
        product_id: _Balance(level.on_hand, level.last_count_at)
        for product_id, level in levels.items()
    }
    rows: list[tuple[int, uuid.UUID, dict[str, object]]] = []
    for i in sorted(range(len(changes)), key=lambda i: changes[i].product_id):
        change = changes[i]
        if change.source_key is not None:
            if change.source_key in done:
                continue
            done.add(change.source_key)
        balance = balances[change.product_id]
        last_count = balance.last_count_at
        absorbed = False
        if change.kind == "count":
            if last_count is None or change.occurred_at > last_count:
                balance.on_hand = change.quantity + later.get(
                    (change.product_id, change.occurred_at), 0
                )
                balance.last_count_at = change.occurred_at
            else:
                absorbed = True
        elif last_count is not None and change.occurred_at <= last_count:
            absorbed = True
        else:
            balance.on_hand += change.quantity
        movement_id = new_id()
        rows.append(
            (
                i,
                movement_id,
                {
                    "id": movement_id,
                    "merchant_id": merchant_id,
                    "store_id": store_id,
                    "product_id": change.product_id,
                    "kind": change.kind,
                    "quantity": change.quantity,
                    "reason": change.reason,
                    "reference": change.reference,
                    "source_key": change.source_key,
                    "occurred_at": change.occurred_at,
                    "absorbed": absorbed,
                    "on_hand_after": balance.on_hand,
                },
            )
        )
    if not rows:
        return []
    # Plain rows, not ORM objects: a sale's movements are written and never touched again.
    inserted = {
        movement.id: movement
        for movement in await session.execute(
            pg.insert(_MOVEMENTS)
            .on_conflict_do_nothing(index_elements=["merchant_id", "source_key"])
            .returning(*_MOVEMENTS.c),
            [row for _, _, row in rows],
        )
    }
    now = datetime.now(UTC)
    alerts: list[EventEnvelope] = []
    for product_id in {
        row["product_id"] for _, movement_id, row in rows if movement_id in inserted
    }:
        assert isinstance(product_id, uuid.UUID)
        level = levels[product_id]
        level.on_hand = balances[product_id].on_hand
        level.last_count_at = balances[product_id].last_count_at
        level.updated_at = now
        alert = _check_low(level, causation=causation)
        if alert is not None:
            alerts.append(alert)
    await add_events(session, alerts)
    await session.flush()
    return [
        inserted[movement_id]
        for _, movement_id, _ in sorted(rows, key=lambda row: row[0])
        if movement_id in inserted
    ]


def _check_low(level: StockLevel, *, causation: uuid.UUID | None = None) -> EventEnvelope | None:
    """Alert once per downward crossing of the threshold; rising above it re-arms the alert."""
    threshold = level.low_threshold
    if threshold is None:
        level.low_alerted = False
        return None
    if level.on_hand > threshold:
        level.low_alerted = False
        return None
    if level.low_alerted:
        return None
    level.low_alerted = True
    return make_envelope(
        StockLow(
            store_id=level.store_id,
            product_id=level.product_id,
            on_hand=level.on_hand,
            threshold=threshold,
        ),
        producer=PRODUCER,
        aggregate_id=f"{level.store_id}:{level.product_id}",
        merchant_id=level.merchant_id,
        store_id=level.store_id,
        causation_id=causation,
    )


async def set_threshold(
    session: AsyncSession,
    merchant_id: uuid.UUID,
    store_id: uuid.UUID,
    product_id: uuid.UUID,
    threshold: int | None,
) -> StockLevelOut:
    if not await known_products(session, merchant_id, [product_id]):
        raise NotFound("Product not found.")
    level = (await _lock_levels(session, merchant_id, store_id, [product_id]))[product_id]
    level.low_threshold = threshold
    # A new threshold starts armed: stock already at or below it is reported now.
    level.low_alerted = False
    alert = _check_low(level)
    if alert is not None:
        await add_event(session, alert)
    await session.flush()
    return level_out(level)


async def get_level(
    session: AsyncSession, merchant_id: uuid.UUID, store_id: uuid.UUID, product_id: uuid.UUID
) -> StockLevelOut:
    if not await known_products(session, merchant_id, [product_id]):
        raise NotFound("Product not found.")
    level = await session.scalar(
        scoped_to_merchant(sa.select(StockLevel), StockLevel, merchant_id).where(
            StockLevel.store_id == store_id, StockLevel.product_id == product_id
        )
    )
    if level is None:
        return StockLevelOut(
            store_id=store_id,
            product_id=product_id,
            on_hand=0,
            negative=False,
            low_threshold=None,
            low=False,
            last_count_at=None,
        )
    return level_out(level)


def level_out(level: StockLevel) -> StockLevelOut:
    threshold = level.low_threshold
    return StockLevelOut(
        store_id=level.store_id,
        product_id=level.product_id,
        on_hand=level.on_hand,
        negative=level.on_hand < 0,
        low_threshold=threshold,
        low=threshold is not None and level.on_hand <= threshold,
        last_count_at=level.last_count_at,
    )


def movement_out(movement: StockMovement | Movement) -> MovementOut:
    return MovementOut(
        id=movement.id,
        store_id=movement.store_id,
        product_id=movement.product_id,
        kind=movement.kind,
        quantity=movement.quantity,
        reason=movement.reason,
        reference=movement.reference,
        occurred_at=movement.occurred_at,
        recorded_at=movement.recorded_at,
        absorbed=movement.absorbed,
        on_hand_after=movement.on_hand_after,
    )
