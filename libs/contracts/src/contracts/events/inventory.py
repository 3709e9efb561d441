"""Events of the inventory service: the catalog (which orders replicates to price checkouts
while inventory is down) and the stock of each store."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pydantic import Field

from contracts.money import Money
from contracts.registry import EventPayload, event

ProductStatus = Literal["active", "inactive", "discontinued"]


class ProductSnapshot(EventPayload):
    """Everything a checkout needs to know about a product, as of ``version``."""

    product_id: UUID
    version: int = Field(ge=1)
    sku: str
    barcode: str | None = None
    name: str
    category_id: UUID | None = None
    unit: str
    price: Money
    tax_rate_bps: int = Field(ge=0, le=10_000)
    is_tobacco: bool = False
    status: ProductStatus
    kitchen_station: str | None = None
    #: Every barcode that scans as one single of the product (the primary one included).
    barcodes: list[str] = Field(default_factory=list)
    #: The tobacco bureau's code of a tobacco product.
    tobacco_code: str | None = None
    #: The product's cost per single, in ``price``'s currency: the catalog's cost price, which
    #: each purchase receipt moves to the moving average of the stock on hand. Null while
    #: unknown (and from producers that predate it).
    cost: Money | None = None


@event(type="inventory.product.created", version=1)
class ProductCreated(ProductSnapshot):
    """A product entered the merchant's catalog."""


@event(type="inventory.product.updated", version=1)
class ProductUpdated(ProductSnapshot):
    """A product changed (name, barcode, status, HQ price...); the payload is the new state."""


@event(type="inventory.product.price_changed", version=1)
class ProductPriceChanged(EventPayload):
    """The price of a product in one store (``store_id``), or at HQ level when ``store_id`` is
    null. A store price of null removes the store's own price (the HQ price applies again)."""

    product_id: UUID
    version: int = Field(ge=1)
    store_id: UUID | None = None
    price: Money | None


@event(type="inventory.stock.low", version=1)
class StockLow(EventPayload):
    """On-hand stock of a product in a store fell to or below its threshold (once per crossing)."""

    store_id: UUID
    product_id: UUID
    on_hand: int
    threshold: int
