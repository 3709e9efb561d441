"""Keep the catalog replica from ``inventory.product.*`` events.

Every event carries the product's version (store and HQ price changes share it); a row changes
only when the event is newer than what the replica holds, so a redelivered, replayed or
reordered old event never undoes a newer one. Rows are keyed by ``(merchant_id, product_id)``
and written under the envelope's merchant only.
"""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import EventEnvelope
from contracts.events.inventory import ProductPriceChanged, ProductSnapshot
from orders.models import CatalogCost, CatalogProduct, CatalogStorePrice
from servicekit.consumer import HandlerRegistry, PoisonMessage

handlers = HandlerRegistry()

#: Status of a row that holds only an HQ price whose product snapshot has not arrived yet.
PRICE_ONLY_STATUS = "unknown"

_DESCRIPTIVE = (
    "sku",
    "barcode",
    "name",
    "category_id",
    "unit",
    "tax_rate_bps",
    "is_tobacco",
    "status",
    "kitchen_station",
    "cost",
)


def merchant_of(envelope: EventEnvelope) -> uuid.UUID:
    if envelope.merchant_id is None:
        raise PoisonMessage(f"{envelope.type} {envelope.event_id} carries no merchant_id")
    return envelope.merchant_id


def _newer(column: str, version_column: str, excluded: Any) -> Any:
    """``excluded.<column>`` when the incoming version beats the row's, else the row's value."""
    table = CatalogProduct.__table__.c
    return sa.case(
        (excluded.version > table[version_column], excluded[column]), else_=table[column]
    )


async def _apply_snapshot(session: AsyncSession, envelope: EventEnvelope) -> None:
    snapshot = ProductSnapshot.model_validate(envelope.payload)
    # A cost in another currency than the price cannot be set against the product's sales.
    cost = snapshot.cost
    known_cost = (
        cost.amount if cost is not None and cost.currency == snapshot.price.currency else None
    )
    values = {
        "merchant_id": merchant_of(envelope),
        "product_id": snapshot.product_id,
        "version": snapshot.version,
        "price_version": snapshot.version,
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
        "cost": known_cost,
    }
    # Every version's cost is kept with the time it was announced, whatever order the events
    # arrive in: an offline order synced later looks up the cost in force when it was sold.
    await session.execute(
        pg.insert(CatalogCost)
        .values(
            merchant_id=values["merchant_id"],
            product_id=snapshot.product_id,
            version=snapshot.version,
            effective_at=envelope.occurred_at,
            currency=snapshot.price.currency,
            cost=known_cost,
        )
        .on_conflict_do_nothing()
    )
    stmt = pg.insert(CatalogProduct).values(values)
    excluded = stmt.excluded
    # The descriptive part follows ``version``, the price part ``price_version``: a newer HQ
    # price change applied before this snapshot keeps its price.
    updates = {name: _newer(name, "version", excluded) for name in _DESCRIPTIVE}
    updates["version"] = sa.func.greatest(CatalogProduct.version, excluded.version)
    for name in ("price", "currency"):
        updates[name] = _newer(name, "price_version", excluded)
    updates["price_version"] = sa.func.greatest(
        CatalogProduct.price_version, excluded.price_version
    )
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=[CatalogProduct.merchant_id, CatalogProduct.product_id],
            set_=updates,
            where=sa.or_(
                CatalogProduct.version < excluded.version,
                CatalogProduct.price_version < excluded.price_version,
            ),
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
        price_first = pg.insert(CatalogProduct).values(
            merchant_id=merchant_id,
            product_id=change.product_id,
            version=0,
            price_version=change.version,
            sku="",
            name="",
            unit="",
            currency=change.price.currency,
            price=change.price.amount,
            tax_rate_bps=0,
            is_tobacco=False,
            status=PRICE_ONLY_STATUS,
        )
        await session.execute(
            price_first.on_conflict_do_update(
                index_elements=[CatalogProduct.merchant_id, CatalogProduct.product_id],
                set_={
                    "price": price_first.excluded.price,
                    "currency": price_first.excluded.currency,
                    "price_version": price_first.excluded.price_version,
                },
                where=CatalogProduct.price_version < price_first.excluded.price_version,
            )
        )
        return
    values = {
        "merchant_id": merchant_id,
        "product_id": change.product_id,
        "store_id": change.store_id,
        "version": change.version,
        "currency": change.price.currency if change.price else None,
        "price": change.price.amount if change.price else None,
    }
    # A removal is kept as a row with a null price: a replayed older price cannot come back.
    stmt = pg.insert(CatalogStorePrice).values(values)
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=[
                CatalogStorePrice.merchant_id,
                CatalogStorePrice.product_id,
                CatalogStorePrice.store_id,
            ],
            set_={k: stmt.excluded[k] for k in ("version", "currency", "price")},
            where=CatalogStorePrice.version < stmt.excluded.version,
        )
    )
