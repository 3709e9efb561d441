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

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.events.inventory import StockLow
from contracts.ids import new_id
from contracts.registry import make_envelope
from inventory.models import Product, StockLevel, StockMovement
from inventory.stock.schemas import MovementKind, MovementOut, StockLevelOut
from servicekit.errors import FieldError, NotFound, ValidationFailed
from servicekit.outbox import add_event

PRODUCER = "inventory"


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
        sa.select(Product.id).where(Product.merchant_id == merchant_id, Product.id.in_(wanted))
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


async def _lock_level(
    session: AsyncSession, merchant_id: uuid.UUID, store_id: uuid.UUID, product_id: uuid.UUID
) -> StockLevel:
    await session.execute(
        pg.insert(StockLevel)
        .values(merchant_id=merchant_id, store_id=store_id, product_id=product_id, on_hand=0)
        .on_conflict_do_nothing(index_elements=["store_id", "product_id"])
    )
    level = (
        await session.execute(
            sa.select(StockLevel)
            .where(StockLevel.store_id == store_id, StockLevel.product_id == product_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).scalar_one()
    return level


async def _changes_after(
    session: AsyncSession, store_id: uuid.UUID, product_id: uuid.UUID, moment: datetime
) -> int:
    total = await session.execute(
        sa.select(sa.func.coalesce(sa.func.sum(StockMovement.quantity), 0)).where(
            StockMovement.store_id == store_id,
            StockMovement.product_id == product_id,
            StockMovement.kind != "count",
            StockMovement.occurred_at > moment,
        )
    )
    return int(total.scalar_one())


async def record(
    session: AsyncSession,
    merchant_id: uuid.UUID,
    store_id: uuid.UUID,
    change: Change,
    *,
    causation: uuid.UUID | None = None,
) -> StockMovement | None:
    """Append ``change`` to the ledger and update the balance; ``None`` when a movement with
    the same ``source_key`` is already recorded (the effect happened before)."""
    level = await _lock_level(session, merchant_id, store_id, change.product_id)
    absorbed = False
    new_on_hand = level.on_hand
    last_count = level.last_count_at
    if change.kind == "count":
        if last_count is None or change.occurred_at > last_count:
            later = await _changes_after(session, store_id, change.product_id, change.occurred_at)
            new_on_hand = change.quantity + later
        else:
            absorbed = True
    elif last_count is not None and change.occurred_at <= last_count:
        absorbed = True
    else:
        new_on_hand = level.on_hand + change.quantity

    movement_id = new_id()
    inserted = await session.execute(
        pg.insert(StockMovement)
        .values(
            id=movement_id,
            merchant_id=merchant_id,
            store_id=store_id,
            product_id=change.product_id,
            kind=change.kind,
            quantity=change.quantity,
            reason=change.reason,
            reference=change.reference,
            source_key=change.source_key,
            occurred_at=change.occurred_at,
            absorbed=absorbed,
            on_hand_after=new_on_hand,
        )
        .on_conflict_do_nothing(index_elements=["merchant_id", "source_key"])
        .returning(StockMovement.id)
    )
    if inserted.scalar_one_or_none() is None:
        return None
    if change.kind == "count" and not absorbed:
        level.last_count_at = change.occurred_at
    level.on_hand = new_on_hand
    level.updated_at = datetime.now(UTC)
    await _check_low(session, level, causation=causation)
    await session.flush()
    movement = await session.get(StockMovement, movement_id)
    assert movement is not None
    return movement


async def _check_low(
    session: AsyncSession, level: StockLevel, *, causation: uuid.UUID | None = None
) -> None:
    """Alert once per downward crossing of the threshold; rising above it re-arms the alert."""
    threshold = level.low_threshold
    if threshold is None:
        level.low_alerted = False
        return
    if level.on_hand <= threshold:
        if not level.low_alerted:
            level.low_alerted = True
            envelope = make_envelope(
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
            await add_event(session, envelope)
    else:
        level.low_alerted = False


async def record_many(
    session: AsyncSession,
    merchant_id: uuid.UUID,
    store_id: uuid.UUID,
    changes: list[Change],
    *,
    causation: uuid.UUID | None = None,
) -> list[StockMovement]:
    """Record several changes; rows are locked in product order so that two concurrent
    multi-line documents never deadlock on each other's balances."""
    recorded: list[tuple[int, StockMovement]] = []
    order = sorted(range(len(changes)), key=lambda i: changes[i].product_id)
    for i in order:
        movement = await record(session, merchant_id, store_id, changes[i], causation=causation)
        if movement is not None:
            recorded.append((i, movement))
    return [movement for _, movement in sorted(recorded, key=lambda pair: pair[0])]


async def set_threshold(
    session: AsyncSession,
    merchant_id: uuid.UUID,
    store_id: uuid.UUID,
    product_id: uuid.UUID,
    threshold: int | None,
) -> StockLevelOut:
    if not await known_products(session, merchant_id, [product_id]):
        raise NotFound("Product not found.")
    level = await _lock_level(session, merchant_id, store_id, product_id)
    level.low_threshold = threshold
    # A new threshold starts armed: stock already at or below it is reported now.
    level.low_alerted = False
    await _check_low(session, level)
    await session.flush()
    return level_out(level)


async def get_level(
    session: AsyncSession, merchant_id: uuid.UUID, store_id: uuid.UUID, product_id: uuid.UUID
) -> StockLevelOut:
    if not await known_products(session, merchant_id, [product_id]):
        raise NotFound("Product not found.")
    level = await session.get(StockLevel, (store_id, product_id))
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


def movement_out(movement: StockMovement) -> MovementOut:
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
