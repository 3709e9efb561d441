"""Keep the catalog replica from ``inventory.product.*`` events.

Every event carries the product's version; a row changes only when the event is newer than
what the replica holds, so a redelivered or reordered old event never undoes a newer one.
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import EventEnvelope
from contracts.events.inventory import ProductPriceChanged, ProductSnapshot
from orders.models import CatalogProduct, CatalogStorePrice
from servicekit.consumer import HandlerRegistry, PoisonMessage

handlers = HandlerRegistry()


def merchant_of(envelope: EventEnvelope) -> uuid.UUID:
    if envelope.merchant_id is None:
        raise PoisonMessage(f"{envelope.type} {envelope.event_id} carries no merchant_id")
    return envelope.merchant_id


async def _apply_snapshot(session: AsyncSession, envelope: EventEnvelope) -> None:
    snapshot = ProductSnapshot.model_validate(envelope.payload)
    values = {
        "product_id": snapshot.product_id,
        "merchant_id": merchant_of(envelope),
        "version": snapshot.version,
        "sku": snapshot.sku,
        "barcode": snapshot.barcode,
        "name": snapshot.name,
        "category_id": snapshot.category_id,
        "unit": snapshot.unit,
        "currency": snapshot.price.currency,
        "price": snapshot.price.amount,
        "tax_rate_bps": snapshot.tax_rate_bps,
        "is_tobacco": snapshot.is_tobacco,
        "status": snapshot.status,
        "kitchen_station": snapshot.kitchen_station,
    }
    stmt = pg.insert(CatalogProduct).values(values)
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=[CatalogProduct.product_id],
            set_={k: stmt.excluded[k] for k in values if k != "product_id"},
            where=CatalogProduct.version < stmt.excluded.version,
        )
    )


handlers.add("inventory.product.created", _apply_snapshot)
handlers.add("inventory.product.updated", _apply_snapshot)


@handlers.on("inventory.product.price_changed")
async def apply_price_change(session: AsyncSession, envelope: EventEnvelope) -> None:
    change = ProductPriceChanged.model_validate(envelope.payload)
    merchant_id = merchant_of(envelope)
    if change.store_id is None:
        if change.price is None:
            raise PoisonMessage("an HQ price cannot be removed")
        # The HQ price lives on the product row; a newer full snapshot supersedes it.
        await session.execute(
            sa.update(CatalogProduct)
            .where(
                CatalogProduct.product_id == change.product_id,
                CatalogProduct.version < change.version,
            )
            .values(
                price=change.price.amount, currency=change.price.currency, version=change.version
            )
        )
        return
    values = {
        "product_id": change.product_id,
        "store_id": change.store_id,
        "merchant_id": merchant_id,
        "version": change.version,
        "currency": change.price.currency if change.price else None,
        "price": change.price.amount if change.price else None,
    }
    stmt = pg.insert(CatalogStorePrice).values(values)
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=[CatalogStorePrice.product_id, CatalogStorePrice.store_id],
            set_={k: stmt.excluded[k] for k in ("version", "currency", "price")},
            where=CatalogStorePrice.version < stmt.excluded.version,
        )
    )
