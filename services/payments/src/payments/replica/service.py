"""The order replica: applying what is known of an order, whatever the order it arrives in.

Every source (the ``placed``, ``paid`` and ``cancelled`` events, and a read-through from the
orders service) goes through :func:`apply`, one ``INSERT … ON CONFLICT`` that only ever raises
the state's rank: ``cancelled`` before ``placed`` leaves a tombstone the ``placed`` fills in but
cannot reopen, ``paid`` never goes back to ``open``, and replaying a window changes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from payments.models import STATE_RANK, OrderReplica


@dataclass(frozen=True, slots=True)
class OrderFacts:
    """What one source says about an order; ``None`` means "this source does not say"."""

    merchant_id: uuid.UUID
    order_id: uuid.UUID
    store_id: uuid.UUID
    state: str
    member_id: uuid.UUID | None = None
    total_amount: int | None = None
    currency: str | None = None
    lines: Sequence[tuple[uuid.UUID, int]] | None = None
    business_day: date | None = None


def _lines_json(lines: Sequence[tuple[uuid.UUID, int]]) -> list[dict[str, Any]]:
    return [{"product_id": str(product), "quantity": quantity} for product, quantity in lines]


async def apply(session: AsyncSession, facts: OrderFacts) -> None:
    rank = STATE_RANK[facts.state]
    table = OrderReplica.__table__
    stmt = pg_insert(OrderReplica).values(
        merchant_id=facts.merchant_id,
        order_id=facts.order_id,
        store_id=facts.store_id,
        member_id=facts.member_id,
        total_amount=facts.total_amount,
        currency=facts.currency,
        state=facts.state,
        state_rank=rank,
        lines=_lines_json(facts.lines) if facts.lines is not None else None,
        business_day=facts.business_day,
    )
    new = stmt.excluded
    advances = new.state_rank > table.c.state_rank
    stmt = stmt.on_conflict_do_update(
        index_elements=[OrderReplica.merchant_id, OrderReplica.order_id],
        set_={
            "state": sa.case((advances, new.state), else_=table.c.state),
            "state_rank": sa.func.greatest(table.c.state_rank, new.state_rank),
            # Details only fill gaps (a tombstone has none); they never change an order.
            "member_id": sa.func.coalesce(table.c.member_id, new.member_id),
            "total_amount": sa.func.coalesce(table.c.total_amount, new.total_amount),
            "currency": sa.func.coalesce(table.c.currency, new.currency),
            "lines": sa.func.coalesce(table.c.lines, new.lines),
            "business_day": sa.func.coalesce(table.c.business_day, new.business_day),
            "updated_at": sa.func.now(),
        },
    )
    await session.execute(stmt)


async def find(
    session: AsyncSession, merchant_id: uuid.UUID, order_id: uuid.UUID, *, lock: bool = False
) -> OrderReplica | None:
    stmt = sa.select(OrderReplica).where(
        OrderReplica.merchant_id == merchant_id, OrderReplica.order_id == order_id
    )
    if lock:
        stmt = stmt.with_for_update()
    row: OrderReplica | None = await session.scalar(stmt)
    return row
