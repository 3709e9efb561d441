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
from inventory.catalog.schemas import (
    BarcodeIn,
    BarcodeOut,
    Pack,
    ProductCreate,
    ProductOut,
    ProductUpdate,
    StorePriceSet,
)
from inventory.models import Category, Product, ProductBarcode, StorePrice
from inventory.stores.service import require_store, require_writable_store
from inventory.taxes.service import require_rate
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


def snapshot(product: Product) -> dict[str, Any]:
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
        "barcodes": [b.barcode for b in all_barcodes(product) if b.pack_unit is None],
        "tobacco_code": product.tobacco_code,
        "cost": Money.of(product.cost, product.currency) if product.cost is not None else None,
    }


def all_barcodes(product: Product) -> list[BarcodeOut]:
    """The product's own barcode, its packs' and the extra ones, each with what it counts."""
    packs = {pack["unit"]: pack for pack in product.packs}
    found = []
    if product.barcode is not None:
        found.append(BarcodeOut(barcode=product.barcode, pack_unit=None, pack_quantity=1))
    for pack in product.packs:
        if pack.get("barcode"):
            found.append(
                BarcodeOut(
                    barcode=pack["barcode"], pack_unit=pack["unit"], pack_quantity=pack["quantity"]
                )
            )
    for extra in product.extra_barcodes:
        unit = extra.get("pack_unit")
        quantity = packs[unit]["quantity"] if unit in packs else 1
        found.append(
            BarcodeOut(
                barcode=extra["barcode"],
                pack_unit=unit if unit in packs else None,
                pack_quantity=quantity,
            )
        )
    return found


def pack_quantity(product: Product, unit: str | None) -> int | None:
    """How many singles one ``unit`` of the product is; ``None`` for a unit it has no pack of."""
    if unit is None or unit == product.unit:
        return 1
    for pack in product.packs:
        if pack["unit"] == unit:
            return int(pack["quantity"])
    return None


async def _sync_barcodes(session: AsyncSession, product: Product) -> None:
    """Make ``product_barcodes`` hold exactly the product's barcodes: its primary key is what
    keeps a barcode on one product of the merchant only."""
    await session.execute(
        sa.delete(ProductBarcode).where(
            ProductBarcode.merchant_id == product.merchant_id,
            ProductBarcode.product_id == product.id,
        )
    )
    rows = [
        {
            "merchant_id": product.merchant_id,
            "barcode": b.barcode,
            "product_id": product.id,
            "pack_unit": b.pack_unit,
            "pack_quantity": b.pack_quantity,
        }
        for b in all_barcodes(product)
    ]
    if len({row["barcode"] for row in rows}) != len(rows):
        raise Conflict("A barcode appears twice on this product.", code="duplicate_barcode")
    if rows:
        try:
            async with session.begin_nested():
                await session.execute(sa.insert(ProductBarcode), rows)
        except IntegrityError as exc:
            if "product_barcodes_pkey" in str(exc.orig):
                raise Conflict(
                    "Another product of this merchant has this barcode.", code="duplicate_barcode"
                ) from None
            raise


def _check_packs(packs: list[Pack], unit: str) -> None:
    units = [pack.unit for pack in packs]
    if len(set(units)) != len(units) or unit in units:
        raise ValidationFailed(
            [FieldError("packs", "duplicate_unit", "one pack per unit, other than the unit sold.")]
        )


async def check_references(
    session: AsyncSession,
    merchant_id: uuid.UUID,
    *,
    category_id: uuid.UUID | None,
    tax_rate_bps: int | None,
) -> None:
    if category_id is not None:
        found = await session.scalar(
            sa.select(Category.id).where(
                Category.merchant_id == merchant_id, Category.id == category_id
            )
        )
        if found is None:
            raise ValidationFailed(
                [FieldError("category_id", "unknown_category", "No such category.")]
            )
    if tax_rate_bps is not None:
        await require_rate(session, merchant_id, tax_rate_bps)


async def emit(
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
        packs=[Pack.model_validate(pack) for pack in product.packs],
        barcodes=all_barcodes(product),
        tobacco_code=product.tobacco_code,
        store_override=product.store_override,  # type: ignore[arg-type]
        override_min=(
            Money.of(product.override_min, product.currency)
            if product.override_min is not None
            else None
        ),
        override_max=(
            Money.of(product.override_max, product.currency)
            if product.override_max is not None
            else None
        ),
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


async def _flush(session: AsyncSession, added: object | None = None) -> None:
    """Flush in a savepoint, so the request's transaction survives to store the 409. A new
    row is added inside it: opening a savepoint flushes what is pending first."""
    try:
        async with session.begin_nested():
            if added is not None:
                session.add(added)
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
    _check_currency(data.price, data.override_min, "override_min")
    _check_currency(data.price, data.override_max, "override_max")
    _check_packs(data.packs, data.unit)
    await check_references(
        session,
        principal.merchant_id,
        category_id=data.category_id,
        tax_rate_bps=data.tax_rate_bps,
    )
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
        packs=[pack.model_dump() for pack in data.packs],
        tobacco_code=data.tobacco_code,
        store_override=data.store_override,
        override_min=data.override_min.amount if data.override_min else None,
        override_max=data.override_max.amount if data.override_max else None,
        extra_barcodes=[],
        version=1,
    )
    await _flush(session, product)
    await _sync_barcodes(session, product)
    await session.refresh(product)
    await emit(session, product, ProductCreated(**snapshot(product)))
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
    found = (
        await session.execute(
            scoped(sa.select(Product, ProductBarcode), Product, principal)
            .join(
                ProductBarcode,
                sa.and_(
                    ProductBarcode.merchant_id == Product.merchant_id,
                    ProductBarcode.product_id == Product.id,
                ),
            )
            .where(ProductBarcode.barcode == barcode)
        )
    ).one_or_none()
    if found is None:
        raise NotFound("No product has this barcode.")
    product, scanned = found
    out = await _out_for_store(session, principal, product, store_id)
    return out.model_copy(
        update={
            "scanned_pack": BarcodeOut(
                barcode=scanned.barcode,
                pack_unit=scanned.pack_unit,
                pack_quantity=scanned.pack_quantity,
            )
        }
    )


def _check_version(product: Product, version: int) -> None:
    if product.version != version:
        raise VersionMismatch(current_version=product.version)


_NOT_NULLABLE = frozenset(
    {
        "sku",
        "name",
        "unit",
        "price",
        "tax_rate_bps",
        "is_tobacco",
        "status",
        "packs",
        "store_override",
    }
)


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
    if "packs" in sent and data.packs is not None:
        _check_packs(data.packs, data.unit or product.unit)
    await check_references(
        session,
        principal.merchant_id,
        category_id=data.category_id if "category_id" in sent else None,
        tax_rate_bps=data.tax_rate_bps if "tax_rate_bps" in sent else None,
    )
    for name in sent:
        value = getattr(data, name)
        if name == "packs":
            product.packs = [pack.model_dump() for pack in value or []]
        elif name in ("override_min", "override_max"):
            if value is not None and value.currency != currency:
                raise ValidationFailed(
                    [FieldError(name, "currency_mismatch", f"must be in {currency}.")]
                )
            setattr(product, name, value.amount if value is not None else None)
        elif name == "price":
            assert price is not None
            product.price, product.currency = price.amount, price.currency
        elif name == "cost":
            product.cost = value.amount if value is not None else None
        else:
            setattr(product, name, value)
    product.version += 1
    product.updated_at = datetime.now(UTC)
    await _flush(session)
    if sent & {"barcode", "packs"}:
        await _sync_barcodes(session, product)
    await emit(session, product, ProductUpdated(**snapshot(product)))
    return product_out(product, show_cost=sees_cost(principal))


async def add_barcode(
    session: AsyncSession, principal: Principal, product_id: uuid.UUID, data: BarcodeIn
) -> ProductOut:
    """One more barcode for the product or one of its packs."""
    require_merchant_wide(principal)
    product = await get_product(session, principal, product_id, for_update=True)
    if data.pack_unit is not None and pack_quantity(product, data.pack_unit) is None:
        raise ValidationFailed(
            [FieldError("pack_unit", "unknown_pack", "The product has no pack of this unit.")]
        )
    if any(b.barcode == data.barcode for b in all_barcodes(product)):
        return product_out(product, show_cost=sees_cost(principal))
    product.extra_barcodes = [
        *product.extra_barcodes,
        {"barcode": data.barcode, "pack_unit": data.pack_unit},
    ]
    await _sync_barcodes(session, product)
    product.version += 1
    product.updated_at = datetime.now(UTC)
    await _flush(session)
    await emit(session, product, ProductUpdated(**snapshot(product)))
    return product_out(product, show_cost=sees_cost(principal))


async def remove_barcode(
    session: AsyncSession, principal: Principal, product_id: uuid.UUID, barcode: str
) -> ProductOut:
    """Remove an extra barcode (the primary one and the packs' change through PATCH)."""
    require_merchant_wide(principal)
    product = await get_product(session, principal, product_id, for_update=True)
    kept = [extra for extra in product.extra_barcodes if extra["barcode"] != barcode]
    if len(kept) == len(product.extra_barcodes):
        raise NotFound("The product has no such extra barcode.", code="barcode_not_found")
    product.extra_barcodes = kept
    await _sync_barcodes(session, product)
    product.version += 1
    product.updated_at = datetime.now(UTC)
    await _flush(session)
    await emit(session, product, ProductUpdated(**snapshot(product)))
    return product_out(product, show_cost=sees_cost(principal))


def check_store_override(product: Product, price: Money | None) -> None:
    """What HQ lets a store's own staff do to the price (HQ itself is not bound by it)."""
    if product.store_override == "forbidden":
        raise Forbidden(
            "HQ sets this product's price in every store.", code="store_override_forbidden"
        )
    if product.store_override == "range" and price is not None:
        low, high = product.override_min, product.override_max
        if (low is not None and price.amount < low) or (high is not None and price.amount > high):
            raise ValidationFailed(
                [FieldError("price", "price_out_of_range", "outside the range HQ allows.")]
            )


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
    if principal.store_ids is not None:
        check_store_override(product, data.price)
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
    await emit(
        session,
        product,
        ProductPriceChanged(
            product_id=product.id, version=product.version, store_id=store_id, price=data.price
        ),
        store_id=store_id,
    )
    out = product_out(product, existing, show_cost=sees_cost(principal))
    return out.model_copy(update={"store_id": store_id})
