"""Catalog logic: create and change products, set store prices, and tell orders about it.

Every change bumps the product's ``version`` and writes the matching ``inventory.product.*``
event to the outbox in the same transaction; orders keeps its replica from those events.

Products belong to the merchant as a whole: creating or changing one needs a caller whose
reach is the whole merchant (no store list in the token). A store manager sets the prices of
their own stores only. Cost is shown only to callers who manage the catalog.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.events.inventory import (
    ProductCreated,
    ProductPriceChanged,
    ProductUpdated,
)
from contracts.ids import new_id
from contracts.money import Money
from contracts.registry import make_envelope
from inventory.catalog.schemas import ProductCreate, ProductOut, ProductUpdate, StorePriceSet
from inventory.models import Product, StorePrice
from inventory.stores.service import require_store, require_writable_store
from servicekit.auth import Principal, scoped
from servicekit.errors import (
    Conflict,
    FieldError,
    Forbidden,
    NotFound,
    ValidationFailed,
    VersionMismatch,
)
from servicekit.outbox import add_event

PRODUCER = "inventory"
CATALOG_MANAGE = "catalog:manage"


def sees_cost(principal: Principal) -> bool:
    return principal.has(CATALOG_MANAGE)


def require_merchant_wide(principal: Principal) -> None:
    """403 for a caller limited to some stores: the catalog is the whole merchant's."""
    if principal.store_ids is not None:
        raise Forbidden(
            "Products are shared by every store: changing one needs merchant-wide access. "
            "A store's own price is set with PUT /v1/products/{id}/store-prices/{store_id}.",
            code="merchant_scope_required",
        )


def _snapshot(product: Product) -> dict[str, Any]:
    return {
        "product_id": product.id,
        "version": product.version,
        "sku": product.sku,
        "barcode": product.barcode,
        "name": product.name,
        "category_id": product.category_id,
        "unit": product.unit,
        "price": Money.of(product.price, product.currency),
        "tax_rate_bps": product.tax_rate_bps,
        "is_tobacco": product.is_tobacco,
        "status": product.status,
        "kitchen_station": product.kitchen_station,
    }


async def _emit(
    session: AsyncSession, product: Product, payload: BaseModel, store_id: uuid.UUID | None = None
) -> None:
    envelope = make_envelope(
        payload,
        producer=PRODUCER,
        aggregate_id=product.id,
        merchant_id=product.merchant_id,
        store_id=store_id,
    )
    await add_event(session, envelope)


def product_out(
    product: Product, store_price: StorePrice | None = None, *, show_cost: bool
) -> ProductOut:
    hq = Money.of(product.price, product.currency)
    own = Money.of(store_price.price, store_price.currency) if store_price else None
    return ProductOut(
        id=product.id,
        sku=product.sku,
        barcode=product.barcode,
        name=product.name,
        category_id=product.category_id,
        unit=product.unit,
        price=hq,
        cost=(
            Money.of(product.cost, product.currency)
            if show_cost and product.cost is not None
            else None
        ),
        tax_rate_bps=product.tax_rate_bps,
        is_tobacco=product.is_tobacco,
        status=product.status,
        kitchen_station=product.kitchen_station,
        version=product.version,
        created_at=product.created_at,
        updated_at=product.updated_at,
        store_id=store_price.store_id if store_price else None,
        store_price=own,
        effective_price=own or hq,
    )


def _duplicate(exc: IntegrityError) -> Conflict | None:
    text = str(exc.orig)
    if "uq_products_merchant_sku" in text:
        return Conflict("Another product of this merchant has this SKU.", code="duplicate_sku")
    if "uq_products_merchant_barcode" in text:
        return Conflict(
            "Another product of this merchant has this barcode.", code="duplicate_barcode"
        )
    if "products_pkey" in text:
        return Conflict("A product with this id already exists.", code="duplicate_product_id")
    return None


async def _flush(session: AsyncSession) -> None:
    try:
        await session.flush()
    except IntegrityError as exc:
        problem = _duplicate(exc)
        if problem is None:
            raise
        raise problem from None


def _check_currency(price: Money, other: Money | None, field: str) -> None:
    if other is not None and other.currency != price.currency:
        raise ValidationFailed(
            [FieldError(field, "currency_mismatch", f"must be in {price.currency}.")]
        )


async def create_product(
    session: AsyncSession, principal: Principal, data: ProductCreate
) -> ProductOut:
    require_merchant_wide(principal)
    _check_currency(data.price, data.cost, "cost")
    product = Product(
        id=data.id or new_id(),
        merchant_id=principal.merchant_id,
        sku=data.sku,
        barcode=data.barcode,
        name=data.name,
        category_id=data.category_id,
        unit=data.unit,
        currency=data.price.currency,
        price=data.price.amount,
        cost=data.cost.amount if data.cost else None,
        tax_rate_bps=data.tax_rate_bps,
        is_tobacco=data.is_tobacco,
        status=data.status,
        kitchen_station=data.kitchen_station,
        version=1,
    )
    session.add(product)
    await _flush(session)
    await session.refresh(product)
    await _emit(session, product, ProductCreated(**_snapshot(product)))
    return product_out(product, show_cost=sees_cost(principal))


async def get_product(
    session: AsyncSession,
    principal: Principal,
    product_id: uuid.UUID,
    *,
    for_update: bool = False,
) -> Product:
    stmt = scoped(sa.select(Product), Product, principal).where(Product.id == product_id)
    if for_update:
        stmt = stmt.with_for_update()
    product = (await session.execute(stmt)).scalar_one_or_none()
    if product is None:
        raise NotFound("Product not found.")
    return product


async def store_price_of(
    session: AsyncSession, principal: Principal, product: Product, store_id: uuid.UUID
) -> StorePrice | None:
    price: StorePrice | None = await session.scalar(
        scoped(sa.select(StorePrice), StorePrice, principal).where(
            StorePrice.product_id == product.id, StorePrice.store_id == store_id
        )
    )
    return price


async def read_product(
    session: AsyncSession,
    principal: Principal,
    product_id: uuid.UUID,
    store_id: uuid.UUID | None = None,
) -> ProductOut:
    product = await get_product(session, principal, product_id)
    return await _out_for_store(session, principal, product, store_id)


async def _out_for_store(
    session: AsyncSession,
    principal: Principal,
    product: Product,
    store_id: uuid.UUID | None,
) -> ProductOut:
    show_cost = sees_cost(principal)
    if store_id is None:
        return product_out(product, show_cost=show_cost)
    await require_store(session, principal, store_id)
    own = await store_price_of(session, principal, product, store_id)
    out = product_out(product, own, show_cost=show_cost)
    return out.model_copy(update={"store_id": store_id})


async def lookup_barcode(
    session: AsyncSession,
    principal: Principal,
    barcode: str,
    store_id: uuid.UUID | None,
) -> ProductOut:
    if "\x00" in barcode:  # PostgreSQL cannot even compare it; no product has it anyway
        raise NotFound("No product has this barcode.")
    product = (
        await session.execute(
            scoped(sa.select(Product), Product, principal).where(Product.barcode == barcode)
        )
    ).scalar_one_or_none()
    if product is None:
        raise NotFound("No product has this barcode.")
    return await _out_for_store(session, principal, product, store_id)


def _check_version(product: Product, version: int) -> None:
    if product.version != version:
        raise VersionMismatch(current_version=product.version)


_NOT_NULLABLE = frozenset({"sku", "name", "unit", "price", "tax_rate_bps", "is_tobacco", "status"})


async def update_product(
    session: AsyncSession, principal: Principal, product_id: uuid.UUID, data: ProductUpdate
) -> ProductOut:
    require_merchant_wide(principal)
    product = await get_product(session, principal, product_id, for_update=True)
    _check_version(product, data.version)
    sent = data.model_fields_set - {"version"}
    nulls = [name for name in sorted(sent) if name in _NOT_NULLABLE and getattr(data, name) is None]
    if nulls:
        raise ValidationFailed([FieldError(name, "invalid", "must not be null.") for name in nulls])
    price = data.price if "price" in sent and data.price is not None else None
    currency = price.currency if price is not None else product.currency
    if "cost" in sent and data.cost is not None and data.cost.currency != currency:
        raise ValidationFailed([FieldError("cost", "currency_mismatch", f"must be in {currency}.")])
    for name in sent:
        value = getattr(data, name)
        if name == "price":
            assert price is not None
            product.price, product.currency = price.amount, price.currency
        elif name == "cost":
            product.cost = value.amount if value is not None else None
        else:
            setattr(product, name, value)
    product.version += 1
    product.updated_at = datetime.now(UTC)
    await _flush(session)
    await _emit(session, product, ProductUpdated(**_snapshot(product)))
    return product_out(product, show_cost=sees_cost(principal))


async def set_store_price(
    session: AsyncSession,
    principal: Principal,
    product_id: uuid.UUID,
    store_id: uuid.UUID,
    data: StorePriceSet,
    *,
    store_wait: float = 0.0,
) -> ProductOut:
    await require_writable_store(session, principal, store_id, wait=store_wait)
    product = await get_product(session, principal, product_id, for_update=True)
    _check_version(product, data.version)
    existing = await store_price_of(session, principal, product, store_id)
    if data.price is None:
        if existing is not None:
            await session.delete(existing)
            existing = None
    else:
        if data.price.currency != product.currency:
            raise ValidationFailed(
                [FieldError("price", "currency_mismatch", f"must be in {product.currency}.")]
            )
        if existing is None:
            existing = StorePrice(
                product_id=product.id,
                store_id=store_id,
                merchant_id=product.merchant_id,
                currency=data.price.currency,
                price=data.price.amount,
            )
            session.add(existing)
        else:
            existing.price = data.price.amount
    # The store price shares the product's version so a replica can order both kinds of change.
    product.version += 1
    product.updated_at = datetime.now(UTC)
    await _flush(session)
    await _emit(
        session,
        product,
        ProductPriceChanged(
            product_id=product.id, version=product.version, store_id=store_id, price=data.price
        ),
        store_id=store_id,
    )
    out = product_out(product, existing, show_cost=sees_cost(principal))
    return out.model_copy(update={"store_id": store_id})
