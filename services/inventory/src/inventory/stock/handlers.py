"""Stock effects of orders' events: a paid order takes its goods off the shelf, a refund with
returned goods puts them back.

The inbox already drops redelivered events; each movement also carries a ``source_key``
(``sale:<order>:<product>``, ``refund:<refund>:<product>``) so a re-published event with a new
event id still changes nothing.

Orders is the authority on what a refund returns (it only emits returned lines it accepted);
inventory still refuses to create stock from nothing: a product unknown to the envelope's
merchant, a quantity beyond any real document, or a store identity says belongs to another
merchant changes nothing and is logged, never dead-lettered.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import EventEnvelope
from contracts.events.orders import OrderPaid, OrderRefunded
from inventory.models import Store
from inventory.stock.service import MAX_QUANTITY, Change, known_products, record_many
from servicekit.consumer import HandlerRegistry, PoisonMessage

log = logging.getLogger(__name__)

handlers = HandlerRegistry()


def _merchant(envelope: EventEnvelope) -> uuid.UUID:
    if envelope.merchant_id is None:
        raise PoisonMessage(f"{envelope.type} {envelope.event_id} carries no merchant_id")
    return envelope.merchant_id


def _totals(pairs: Iterable[tuple[uuid.UUID, int]], what: str) -> dict[uuid.UUID, int]:
    totals: dict[uuid.UUID, int] = defaultdict(int)
    for product_id, quantity in pairs:
        totals[product_id] += quantity
    bounded = {}
    for product_id, quantity in totals.items():
        if 0 < quantity <= MAX_QUANTITY:
            bounded[product_id] = quantity
        else:
            log.warning(
                "%s moves %d of product %s: out of bounds, ignored", what, quantity, product_id
            )
    return bounded


async def _store_elsewhere(
    session: AsyncSession, merchant_id: uuid.UUID, store_id: uuid.UUID
) -> bool:
    """True when identity told us this store belongs to another merchant. A store not heard
    of yet is taken on trust: its creation may simply not have arrived."""
    owners = set(
        await session.scalars(sa.select(Store.merchant_id).where(Store.store_id == store_id))
    )
    return bool(owners) and merchant_id not in owners


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
    what = f"order {paid.order_id}"
    if await _store_elsewhere(session, merchant_id, paid.store_id):
        log.warning("%s names store %s of another merchant: ignored", what, paid.store_id)
        return
    totals = await _known(
        session,
        merchant_id,
        _totals(((line.product_id, line.quantity) for line in paid.lines), what),
        what,
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
    what = f"refund {refunded.refund_id}"
    if not refunded.returned_lines:
        return
    if await _store_elsewhere(session, merchant_id, refunded.store_id):
        log.warning("%s names store %s of another merchant: ignored", what, refunded.store_id)
        return
    totals = await _known(
        session,
        merchant_id,
        _totals(((line.product_id, line.quantity) for line in refunded.returned_lines), what),
        what,
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
