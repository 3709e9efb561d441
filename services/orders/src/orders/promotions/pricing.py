"""What the pricing engine is given for an order, and how an order is priced again from it.

An order keeps its pricing inputs (``orders.pricing``): each line's unit price with where it
came from (the store's or HQ's catalog price and that price's version, or an override), the
manual discounts, the moment in store-local time, the member and their level, the promotion
versions considered and the coupons named. :func:`recompute` runs the engine on those alone,
so it gives back what the order stored whatever the catalog, promotions or member became.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from orders.coupons import service as coupons
from orders.models import Order
from orders.promotions import engine
from orders.promotions import service as promotions

#: Bumped if the engine's rules ever change, so old orders can be recomputed by their rules.
ENGINE_VERSION = 1


@dataclass(frozen=True, slots=True)
class PricedInput:
    line: engine.LineInput
    #: ``store``, ``hq`` (the catalog's) or ``override`` (a manual price).
    price_source: str
    price_version: int | None


def inputs_json(
    lines: list[PricedInput],
    context: engine.Context,
    promotion_inputs: list[engine.PromotionInput],
    coupon_ids: list[uuid.UUID],
) -> dict[str, Any]:
    return {
        "engine": ENGINE_VERSION,
        "currency": context.currency,
        "store_id": str(context.store_id),
        "local_time": context.local_time.isoformat(),
        "moment": context.moment.isoformat(),
        "member_id": None if context.member_id is None else str(context.member_id),
        "member_level": context.member_level,
        "lines": [
            {
                "product_id": str(p.line.product_id),
                "category_id": None if p.line.category_id is None else str(p.line.category_id),
                "quantity": p.line.quantity,
                "unit_price": p.line.unit_price,
                "manual_discount": p.line.manual_discount,
                "manual": p.line.manual,
                "price_source": p.price_source,
                "price_version": p.price_version,
            }
            for p in lines
        ],
        "promotion_version_ids": sorted(str(p.version_id) for p in promotion_inputs),
        "coupon_ids": [str(c) for c in coupon_ids],
    }


def _uuid(value: Any) -> uuid.UUID | None:
    return None if value is None else uuid.UUID(value)


async def recompute(session: AsyncSession, order: Order) -> engine.Result | None:
    """The engine's result from the order's stored inputs; ``None`` for an order without them
    (placed before promotions, or synced from a till that priced it)."""
    stored = order.pricing
    if stored is None:
        return None
    context = engine.Context(
        currency=stored["currency"],
        store_id=uuid.UUID(stored["store_id"]),
        local_time=datetime.fromisoformat(stored["local_time"]),
        moment=datetime.fromisoformat(stored["moment"]),
        member_id=_uuid(stored["member_id"]),
        member_level=stored["member_level"],
    )
    lines = [
        engine.LineInput(
            product_id=uuid.UUID(line["product_id"]),
            category_id=_uuid(line["category_id"]),
            quantity=line["quantity"],
            unit_price=line["unit_price"],
            manual_discount=line["manual_discount"],
            manual=line["manual"],
        )
        for line in stored["lines"]
    ]
    versions = await promotions.by_version_ids(
        session, order.merchant_id, [uuid.UUID(v) for v in stored["promotion_version_ids"]]
    )
    loaded = await coupons.load_inputs(
        session, order.merchant_id, [uuid.UUID(c) for c in stored["coupon_ids"]], order_id=order.id
    )
    return engine.price(lines, versions, loaded.inputs, context)
