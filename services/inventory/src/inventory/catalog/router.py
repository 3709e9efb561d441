"""HTTP endpoints of the catalog: ``/v1/products``."""

from __future__ import annotations

import uuid
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Path, Query, status

from inventory.catalog import service
from inventory.catalog.schemas import (
    BarcodeIn,
    ProductCreate,
    ProductOut,
    ProductStatus,
    ProductUpdate,
    StorePriceSet,
)
from inventory.models import Product
from inventory.stores.service import StoreWaitDep
from servicekit.auth import Principal, PrincipalDep, require, scoped
from servicekit.errors import problem_responses
from servicekit.idempotency import Idempotency, IdempotentRoute
from servicekit.pagination import CursorParamsDep, Page, paginate
from servicekit.uow import SessionDep

router = APIRouter(prefix="/v1/products", tags=["catalog"], route_class=IdempotentRoute)

CatalogWriter = Annotated[Principal, Depends(require("catalog:manage"))]
StoreQuery = Annotated[
    uuid.UUID | None, Query(description="Also give this store's own and effective price.")
]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    dependencies=[Depends(Idempotency())],
    responses=problem_responses(403, 409, 422),
)
async def create_product(
    body: ProductCreate, principal: CatalogWriter, session: SessionDep
) -> ProductOut:
    """Add a product to the merchant's catalog (``catalog:manage`` and merchant-wide access:
    403 ``merchant_scope_required`` for a caller limited to some stores)."""
    return await service.create_product(session, principal, body)


@router.get("")
async def list_products(
    principal: PrincipalDep,
    session: SessionDep,
    params: CursorParamsDep,
    product_status: Annotated[ProductStatus | None, Query(alias="status")] = None,
    category_id: uuid.UUID | None = None,
) -> Page[ProductOut]:
    """The merchant's products, oldest first."""
    show_cost = service.sees_cost(principal)
    stmt = scoped(sa.select(Product), Product, principal)
    if product_status is not None:
        stmt = stmt.where(Product.status == product_status)
    if category_id is not None:
        stmt = stmt.where(Product.category_id == category_id)
    return await paginate(
        session,
        stmt,
        order_by=(Product.created_at, Product.id),
        params=params,
        map=lambda product: service.product_out(product, show_cost=show_cost),
    )


@router.get("/by-barcode/{barcode}", responses=problem_responses(404))
async def lookup_by_barcode(
    barcode: Annotated[str, Path(max_length=64)],
    principal: PrincipalDep,
    session: SessionDep,
    store_id: StoreQuery = None,
) -> ProductOut:
    """The product with this barcode (a scanner's lookup)."""
    return await service.lookup_barcode(session, principal, barcode, store_id)


@router.get("/{product_id}", responses=problem_responses(404))
async def get_product(
    product_id: uuid.UUID,
    principal: PrincipalDep,
    session: SessionDep,
    store_id: StoreQuery = None,
) -> ProductOut:
    return await service.read_product(session, principal, product_id, store_id)


@router.patch("/{product_id}", responses=problem_responses(403, 404, 409, 422))
async def update_product(
    product_id: uuid.UUID, body: ProductUpdate, principal: CatalogWriter, session: SessionDep
) -> ProductOut:
    """Change the fields sent (``catalog:manage``, merchant-wide access); a stale ``version``
    answers 409 ``version_mismatch``."""
    return await service.update_product(session, principal, product_id, body)


@router.put(
    "/{product_id}/store-prices/{store_id}", responses=problem_responses(403, 404, 409, 422, 423)
)
async def set_store_price(
    product_id: uuid.UUID,
    store_id: uuid.UUID,
    body: StorePriceSet,
    principal: CatalogWriter,
    session: SessionDep,
    wait: StoreWaitDep,
) -> ProductOut:
    """Set (or with ``price: null`` remove) a store's own price of the product
    (``catalog:manage``; the store must be the caller's: 404 otherwise)."""
    return await service.set_store_price(
        session, principal, product_id, store_id, body, store_wait=wait
    )


@router.post("/{product_id}/barcodes", responses=problem_responses(403, 404, 409, 422))
async def add_barcode(
    product_id: uuid.UUID, body: BarcodeIn, principal: CatalogWriter, session: SessionDep
) -> ProductOut:
    """Give the product (or one of its packs, ``pack_unit``) one more barcode
    (``catalog:manage``, merchant-wide); a barcode of another product is 409
    ``duplicate_barcode``. Adding a barcode it already has changes nothing."""
    return await service.add_barcode(session, principal, product_id, body)


@router.delete("/{product_id}/barcodes/{barcode}", responses=problem_responses(403, 404))
async def remove_barcode(
    product_id: uuid.UUID,
    barcode: Annotated[str, Path(max_length=64)],
    principal: CatalogWriter,
    session: SessionDep,
) -> ProductOut:
    """Remove one of the extra barcodes (``catalog:manage``, merchant-wide)."""
    return await service.remove_barcode(session, principal, product_id, barcode)
