"""Business days and order numbers.

An order's business day is the calendar day of the client's ``occurred_at`` in the store's
timezone, so an order synced a day late still lands in the day it was taken. Its number is
``<store code>-<YYYYMMDD>-<NNNN>``, counted per store and business day in the order's own
transaction: a rolled-back order gives its number back, so a day's numbers have no gaps.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncSession

from orders.models import OrderNumberCounter, Store

#: The timezone of a store whose replica does not carry one yet (every store so far is in China).
DEFAULT_TIMEZONE = "Asia/Shanghai"


@lru_cache(maxsize=256)
def zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or DEFAULT_TIMEZONE)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(DEFAULT_TIMEZONE)


def store_zone(store: Store | None) -> ZoneInfo:
    return zone(store.timezone if store is not None else None)


def business_day(moment: datetime, tz: ZoneInfo) -> date:
    return moment.astimezone(tz).date()


def store_code(store: Store | None, store_id: uuid.UUID) -> str:
    """The store's code, or a stable stand-in from its id until identity's event brings it."""
    if store is not None and store.code:
        return store.code
    return "S" + store_id.hex[:6].upper()


def format_number(code: str, day: date, sequence: int) -> str:
    return f"{code}-{day:%Y%m%d}-{sequence:04d}"


async def take_numbers(
    session: AsyncSession, merchant_id: uuid.UUID, store_id: uuid.UUID, day: date, count: int = 1
) -> int:
    """Reserve ``count`` consecutive numbers of the store's day; returns the first.

    The counter row stays locked until the transaction ends, which serialises numbering within
    one store and day only."""
    stmt = pg.insert(OrderNumberCounter).values(
        merchant_id=merchant_id, store_id=store_id, business_day=day, last=count
    )
    last = await session.scalar(
        stmt.on_conflict_do_update(
            index_elements=[
                OrderNumberCounter.merchant_id,
                OrderNumberCounter.store_id,
                OrderNumberCounter.business_day,
            ],
            set_={"last": OrderNumberCounter.last + count},
        ).returning(OrderNumberCounter.last)
    )
    assert last is not None
    return int(last) - count + 1
