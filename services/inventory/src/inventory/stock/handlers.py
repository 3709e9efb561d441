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
from inventory.models import Product, Store
from inventory.stock.service import MAX_QUANTITY, Change, record_many
from servicekit.auth import scoped_to_merchant
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


async def _applicable(
    session: AsyncSession,
    merchant_id: uuid.UUID,
    store_id: uuid.UUID,
    totals: dict[uuid.UUID, int],
    what: str,
) -> dict[uuid.UUID, int]:
    """The totals of the products the merchant's catalog knows, or none at all when identity
    says the store is another merchant's; one statement. A store not heard of yet is taken
    on trust: its creation may simply not have arrived."""
    if not totals:
        return {}
    owners = (
        sa.select(sa.func.array_agg(Store.merchant_id))
        .where(Store.store_id == store_id)
        .scalar_subquery()
    )
    rows = (
        await session.execute(
            scoped_to_merchant(sa.select(Product.id, owners), Product, merchant_id).where(
                Product.id.in_(totals)
            )
        )
    ).all()
    store_owners = rows[0][1] if rows else None
    if store_owners and merchant_id not in store_owners:
        log.warning("%s names store %s of another merchant: ignored", what, store_id)
        return {}
    found = {row[0] for row in rows}
    for missing in set(totals) - found:
        # Nothing to move for a product this catalog never had; the rest still applies.
        log.warning("%s names product %s, unknown to merchant %s", what, missing, merchant_id)
    return {product_id: qty for product_id, qty in totals.items() if product_id in found}


@handlers.on("orders.order.paid")
async def deduct_sold_goods(session: AsyncSession, envelope: EventEnvelope) -> None:
    merchant_id = _merchant(envelope)
    paid = OrderPaid.model_validate(envelope.payload)
    what = f"order {paid.order_id}"
    totals = await _applicable(
        session,
        merchant_id,
        paid.store_id,
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
    totals = await _applicable(
        session,
        merchant_id,
        refunded.store_id,
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
