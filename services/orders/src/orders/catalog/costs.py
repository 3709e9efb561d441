"""The unit cost an order line freezes when it is sold.

An order placed online takes the replica's current cost. An order synced from a till that was
offline takes, as best it can, the cost in force when it was sold: the cost of the product's
latest version announced at or before the order's ``occurred_at`` (``catalog_costs``). The
announcement time is inventory's, the sale time the till's, so a cost that changed within the
till's clock skew of a sale may be taken one version early or late; a sale older than every
cost the replica knows of has an unknown cost rather than a guessed one.
"""

from __future__ import annotations

import bisect
import uuid
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from orders.models import CatalogCost, CatalogProduct


def current_cost(product: CatalogProduct, currency: str) -> int | None:
    """The product's cost now, when it is in the currency of the sale."""
    return product.cost if product.currency == currency else None


class CostHistory:
    """Each product's costs in announcement order, read once for a batch of orders."""

    def __init__(self, rows: Iterable[tuple[uuid.UUID, datetime, int, str, int | None]]) -> None:
        self._times: dict[uuid.UUID, list[datetime]] = defaultdict(list)
        self._costs: dict[uuid.UUID, list[tuple[str, int | None]]] = defaultdict(list)
        for product_id, effective_at, _version, currency, cost in sorted(
            rows, key=lambda r: (r[0], r[1], r[2])
        ):
            self._times[product_id].append(effective_at)
            self._costs[product_id].append((currency, cost))

    def at(self, product_id: uuid.UUID, when: datetime, currency: str) -> int | None:
        times = self._times.get(product_id)
        if not times:
            return None
        i = bisect.bisect_right(times, when)
        if i == 0:
            return None
        cost_currency, cost = self._costs[product_id][i - 1]
        return cost if cost_currency == currency else None


async def cost_history(
    session: AsyncSession, merchant_id: uuid.UUID, product_ids: Iterable[uuid.UUID]
) -> CostHistory:
    ids = list(set(product_ids))
    if not ids:
        return CostHistory([])
    rows = await session.execute(
        sa.select(
            CatalogCost.product_id,
            CatalogCost.effective_at,
            CatalogCost.version,
            CatalogCost.currency,
            CatalogCost.cost,
        ).where(CatalogCost.merchant_id == merchant_id, CatalogCost.product_id.in_(ids))
    )
    return CostHistory(rows.all())
