"""Stock effects of orders' events: a paid order takes its goods off the shelf, a refund with
returned goods puts them back.

The inbox already drops redelivered events; each movement also carries a ``source_key``
(``sale:<order>:<product>``, ``refund:<refund>:<product>``) so a re-published event with a new
event id still changes nothing.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Iterable

from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import EventEnvelope
from contracts.events.orders import OrderPaid, OrderRefunded
from inventory.stock.service import Change, known_products, record_many
from servicekit.consumer import HandlerRegistry, PoisonMessage

log = logging.getLogger(__name__)

handlers = HandlerRegistry()


def _merchant(envelope: EventEnvelope) -> uuid.UUID:
    if envelope.merchant_id is None:
        raise PoisonMessage(f"{envelope.type} {envelope.event_id} carries no merchant_id")
    return envelope.merchant_id


def _totals(pairs: Iterable[tuple[uuid.UUID, int]]) -> dict[uuid.UUID, int]:
    totals: dict[uuid.UUID, int] = defaultdict(int)
    for product_id, quantity in pairs:
        totals[product_id] += quantity
    return dict(totals)


async def _known(
    session: AsyncSession, merchant_id: uuid.UUID, totals: dict[uuid.UUID, int], what: str
) -> dict[uuid.UUID, int]:
    found = await known_products(session, merchant_id, totals)
    for missing in set(totals) - found:
        # Nothing to move for a product this catalog never had; the rest still applies.
        log.warning("%s names product %s, unknown to merchant %s", what, missing, merchant_id)
    return {product_id: qty for product_id, qty in totals.items() if product_id in found}


@handlers.on("orders.order.paid")
async def deduct_sold_goods(session: AsyncSession, envelope: EventEnvelope) -> None:
    merchant_id = _merchant(envelope)
    paid = OrderPaid.model_validate(envelope.payload)
    totals = await _known(
        session,
        merchant_id,
        _totals((line.product_id, line.quantity) for line in paid.lines),
        f"order {paid.order_id}",
    )
    changes = [
        Change(
            product_id=product_id,
            kind="sale",
            quantity=-quantity,
            occurred_at=paid.occurred_at,
            reference=str(paid.order_id),
            source_key=f"sale:{paid.order_id}:{product_id}",
        )
        for product_id, quantity in totals.items()
    ]
    await record_many(session, merchant_id, paid.store_id, changes, causation=envelope.event_id)


@handlers.on("orders.order.refunded")
async def restock_returned_goods(session: AsyncSession, envelope: EventEnvelope) -> None:
    merchant_id = _merchant(envelope)
    refunded = OrderRefunded.model_validate(envelope.payload)
    totals = await _known(
        session,
        merchant_id,
        _totals((line.product_id, line.quantity) for line in refunded.returned_lines),
        f"refund {refunded.refund_id}",
    )
    changes = [
        Change(
            product_id=product_id,
            kind="refund_return",
            quantity=quantity,
            occurred_at=envelope.occurred_at,
            reason="returned by the customer",
            reference=str(refunded.order_id),
            source_key=f"refund:{refunded.refund_id}:{product_id}",
        )
        for product_id, quantity in totals.items()
    ]
    await record_many(session, merchant_id, refunded.store_id, changes, causation=envelope.event_id)
