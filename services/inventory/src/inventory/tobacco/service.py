"""Tobacco reports: each tobacco product's day in a store (opening and closing stock, what
came in, what sold) and the compliance log of every tobacco purchase and sale, the record an
inspector of the tobacco monopoly bureau asks to see.

Stock at a moment follows the ledger's rule: the latest physical count before it plus the
movements dated between that count and the moment. The day is the store's (its timezone).
"""

from __future__ import annotations

import csv
import io
import uuid
from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from pydantic import BaseModel, Field
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from inventory.models import Product, PurchaseOrder, StockMovement, Store, Supplier
from servicekit.auth import Principal, scoped, scoped_to_merchant

#: The business day of a store whose timezone has not reached the replica yet.
DEFAULT_TIMEZONE = "Asia/Shanghai"
#: The span of business days a report may ask about: beyond it a date is a mistake (and the
#: year 1 or 9999 in a store's timezone would not even convert to UTC).
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)


class TobaccoDayLine(BaseModel):
    product_id: uuid.UUID
    sku: str
    name: str
    tobacco_code: str | None
    opening: int
    purchased: int = Field(description="Stock-ins, purchase receipts included.")
    sold: int
    returned: int
    transferred_in: int
    transferred_out: int
    other: int = Field(description="Adjustments and counts: the rest of the change.")
    closing: int


class TobaccoDayReport(BaseModel):
    store_id: uuid.UUID
    date: date
    timezone: str
    lines: list[TobaccoDayLine]


async def store_timezone(session: AsyncSession, merchant_id: uuid.UUID, store_id: uuid.UUID) -> str:
    name = await session.scalar(
        scoped_to_merchant(sa.select(Store.timezone), Store, merchant_id).where(
            Store.store_id == store_id
        )
    )
    return name or DEFAULT_TIMEZONE


async def balances_at(
    session: AsyncSession,
    merchant_id: uuid.UUID,
    store_id: uuid.UUID,
    product_ids: list[uuid.UUID],
    moment: datetime,
) -> dict[uuid.UUID, int]:
    """Each product's stock as of ``moment``: its last count before then plus the movements
    dated between that count and ``moment``."""
    counts = (
        scoped_to_merchant(
            sa.select(StockMovement.product_id, StockMovement.occurred_at, StockMovement.quantity),
            StockMovement,
            merchant_id,
        )
        .ext(pg.distinct_on(StockMovement.product_id))
        .where(
            StockMovement.store_id == store_id,
            StockMovement.product_id.in_(product_ids),
            StockMovement.kind == "count",
            StockMovement.occurred_at < moment,
        )
        .order_by(
            StockMovement.product_id,
            StockMovement.occurred_at.desc(),
            StockMovement.recorded_at.desc(),
        )
        .subquery()
    )
    balance: dict[uuid.UUID, int] = defaultdict(int)
    for product_id, _, quantity in await session.execute(sa.select(counts)):
        balance[product_id] = int(quantity)
    moved = aliased(StockMovement)
    rows = await session.execute(
        scoped_to_merchant(
            sa.select(moved.product_id, sa.func.sum(moved.quantity)), moved, merchant_id
        )
        .outerjoin(counts, counts.c.product_id == moved.product_id)
        .where(
            moved.store_id == store_id,
            moved.product_id.in_(product_ids),
            moved.kind != "count",
            moved.occurred_at < moment,
            sa.or_(counts.c.occurred_at.is_(None), moved.occurred_at > counts.c.occurred_at),
        )
        .group_by(moved.product_id)
    )
    for product_id, total in rows:
        balance[product_id] += int(total)
    return balance


def day_bounds(day: date, timezone: str) -> tuple[datetime, datetime]:
    zone = ZoneInfo(timezone)
    start = datetime.combine(day, time(0), tzinfo=zone)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)
    return start, end


async def daily_report(
    session: AsyncSession, principal: Principal, store_id: uuid.UUID, day: date
) -> TobaccoDayReport:
    merchant_id = principal.merchant_id
    timezone = await store_timezone(session, merchant_id, store_id)
    start, end = day_bounds(day, timezone)
    products = list(
        (
            await session.scalars(
                scoped(sa.select(Product), Product, principal)
                .where(Product.is_tobacco)
                .order_by(Product.sku)
            )
        ).all()
    )
    ids = [product.id for product in products]
    opening = await balances_at(session, merchant_id, store_id, ids, start)
    closing = await balances_at(session, merchant_id, store_id, ids, end)
    flows: dict[tuple[uuid.UUID, str], int] = defaultdict(int)
    if ids:
        rows = await session.execute(
            scoped(
                sa.select(
                    StockMovement.product_id,
                    StockMovement.kind,
                    sa.func.sum(StockMovement.quantity),
                ),
                StockMovement,
                principal,
            )
            .where(
                StockMovement.store_id == store_id,
                StockMovement.product_id.in_(ids),
                StockMovement.kind != "count",
                StockMovement.occurred_at >= start,
                StockMovement.occurred_at < end,
            )
            .group_by(StockMovement.product_id, StockMovement.kind)
        )
        for product_id, kind, total in rows:
            flows[(product_id, kind)] = int(total)
    lines = []
    for product in products:
        pid = product.id
        purchased = flows[(pid, "stock_in")]
        sold = -flows[(pid, "sale")]
        returned = flows[(pid, "refund_return")]
        moved_in = flows[(pid, "transfer_in")]
        moved_out = -flows[(pid, "transfer_out")]
        known = purchased - sold + returned + moved_in - moved_out
        lines.append(
            TobaccoDayLine(
                product_id=pid,
                sku=product.sku,
                name=product.name,
                tobacco_code=product.tobacco_code,
                opening=opening[pid],
                purchased=purchased,
                sold=sold,
                returned=returned,
                transferred_in=moved_in,
                transferred_out=moved_out,
                other=closing[pid] - opening[pid] - known,
                closing=closing[pid],
            )
        )
    return TobaccoDayReport(store_id=store_id, date=day, timezone=timezone, lines=lines)


COLUMNS = [
    "occurred_at",
    "store_id",
    "movement",
    "product_id",
    "sku",
    "name",
    "tobacco_code",
    "quantity",
    "document",
    "supplier",
    "supplier_licence",
]
_LOGGED = ("stock_in", "sale", "refund_return", "transfer_in", "transfer_out")


async def compliance_log(
    session: AsyncSession,
    principal: Principal,
    since: datetime,
    until: datetime,
    store_id: uuid.UUID | None,
) -> str:
    """Every tobacco purchase, sale, return and transfer in the caller's stores between
    ``since`` and ``until``, oldest first, as CSV."""
    stmt = (
        scoped(
            sa.select(
                StockMovement.occurred_at,
                StockMovement.store_id,
                StockMovement.kind,
                StockMovement.product_id,
                Product.sku,
                Product.name,
                Product.tobacco_code,
                StockMovement.quantity,
                StockMovement.reference,
                Supplier.name,
                PurchaseOrder.tobacco_licence,
            ),
            StockMovement,
            principal,
        )
        .join(
            Product,
            sa.and_(
                Product.merchant_id == StockMovement.merchant_id,
                Product.id == StockMovement.product_id,
            ),
        )
        .outerjoin(
            PurchaseOrder,
            sa.and_(
                PurchaseOrder.merchant_id == StockMovement.merchant_id,
                PurchaseOrder.number == StockMovement.reference,
                StockMovement.reason == "purchase receipt",
            ),
        )
        .outerjoin(
            Supplier,
            sa.and_(
                Supplier.merchant_id == PurchaseOrder.merchant_id,
                Supplier.id == PurchaseOrder.supplier_id,
            ),
        )
        .where(
            Product.is_tobacco,
            StockMovement.kind.in_(_LOGGED),
            StockMovement.occurred_at >= since,
            StockMovement.occurred_at < until,
        )
        .order_by(StockMovement.occurred_at, StockMovement.id)
    )
    if store_id is not None:
        stmt = stmt.where(StockMovement.store_id == store_id)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in await session.execute(stmt):
        writer.writerow(
            [
                row[0].isoformat(),
                *(("" if value is None else _cell(value)) for value in row[1:]),
            ]
        )
    return out.getvalue()


def _cell(value: object) -> str:
    text = str(value)
    # A spreadsheet would run a cell starting with these as a formula.
    if text and text[0] in "=+-@" and not text.lstrip("-").isdigit():
        return "'" + text
    return text
