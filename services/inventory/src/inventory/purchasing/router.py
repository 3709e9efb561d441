"""HTTP endpoints of suppliers (``/v1/suppliers``) and of a store's purchase orders
(``/v1/stores/{store_id}/purchase-orders``)."""

from __future__ import annotations

import uuid
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query, Response, status

from inventory.catalog.service import sees_cost
from inventory.models import PurchaseOrder, PurchaseOrderLine, Supplier, SupplierProduct
from inventory.purchasing import service
from inventory.purchasing.schemas import (
    PurchaseOrderCreate,
    PurchaseOrderOut,
    PurchaseOrderStatus,
    ReceiptIn,
    ReceiptOut,
    SupplierCreate,
    SupplierOut,
    SupplierProductOut,
    SupplierProductSet,
    SupplierUpdate,
    Transition,
)
from inventory.stores.service import StoreWaitDep, require_store, require_writable_store
from servicekit.auth import Principal, PrincipalDep, require, scoped
from servicekit.errors import problem_responses
from servicekit.idempotency import Idempotency, IdempotentRoute
from servicekit.pagination import CursorParamsDep, Page, paginate
from servicekit.uow import SessionDep

suppliers = APIRouter(prefix="/v1/suppliers", tags=["purchasing"], route_class=IdempotentRoute)
orders = APIRouter(
    prefix="/v1/stores/{store_id}/purchase-orders",
    tags=["purchasing"],
    route_class=IdempotentRoute,
)

CatalogWriter = Annotated[Principal, Depends(require("catalog:manage"))]
StockAdjuster = Annotated[Principal, Depends(require("inventory:adjust"))]


@suppliers.post(
    "",
    status_code=status.HTTP_201_CREATED,
    dependencies=[Depends(Idempotency())],
    responses=problem_responses(403, 409, 422),
)
async def create_supplier(
    body: SupplierCreate, principal: CatalogWriter, session: SessionDep
) -> SupplierOut:
    """Add a supplier (``catalog:manage``, merchant-wide)."""
    return await service.create_supplier(session, principal, body)


@suppliers.get("")
async def list_suppliers(
    principal: PrincipalDep, session: SessionDep, params: CursorParamsDep
) -> Page[SupplierOut]:
    return await paginate(
        session,
        scoped(sa.select(Supplier), Supplier, principal),
        order_by=(Supplier.created_at, Supplier.id),
        params=params,
        map=service.supplier_out,
    )


@suppliers.get("/{supplier_id}", responses=problem_responses(404))
async def get_supplier(
    supplier_id: uuid.UUID, principal: PrincipalDep, session: SessionDep
) -> SupplierOut:
    return service.supplier_out(await service.get_supplier(session, principal, supplier_id))


@suppliers.patch("/{supplier_id}", responses=problem_responses(403, 404, 409, 422))
async def update_supplier(
    supplier_id: uuid.UUID, body: SupplierUpdate, principal: CatalogWriter, session: SessionDep
) -> SupplierOut:
    """Change the fields sent (``catalog:manage``, merchant-wide; ``version`` checked)."""
    return await service.update_supplier(session, principal, supplier_id, body)


@suppliers.get("/{supplier_id}/products", responses=problem_responses(403, 404))
async def list_supplier_products(
    supplier_id: uuid.UUID,
    principal: CatalogWriter,
    session: SessionDep,
    params: CursorParamsDep,
) -> Page[SupplierProductOut]:
    """What the supplier sells us and at what cost (``catalog:manage``: costs)."""
    await service.get_supplier(session, principal, supplier_id)
    return await paginate(
        session,
        scoped(sa.select(SupplierProduct), SupplierProduct, principal).where(
            SupplierProduct.supplier_id == supplier_id
        ),
        order_by=(SupplierProduct.product_id, SupplierProduct.supplier_id),
        params=params,
        map=service.supplier_product_out,
    )


@suppliers.put("/{supplier_id}/products/{product_id}", responses=problem_responses(403, 404, 422))
async def set_supplier_product(
    supplier_id: uuid.UUID,
    product_id: uuid.UUID,
    body: SupplierProductSet,
    principal: CatalogWriter,
    session: SessionDep,
) -> SupplierProductOut:
    """The supplier sells us this product at ``cost`` per single (``catalog:manage``,
    merchant-wide); tobacco only from a supplier with a licence (422
    ``supplier_not_licensed``)."""
    return await service.set_supplier_product(session, principal, supplier_id, product_id, body)


@suppliers.delete(
    "/{supplier_id}/products/{product_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(403, 404),
)
async def remove_supplier_product(
    supplier_id: uuid.UUID, product_id: uuid.UUID, principal: CatalogWriter, session: SessionDep
) -> Response:
    await service.remove_supplier_product(session, principal, supplier_id, product_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@orders.post(
    "",
    status_code=status.HTTP_201_CREATED,
    dependencies=[Depends(Idempotency())],
    responses=problem_responses(403, 404, 409, 422, 423),
)
async def create_purchase_order(
    store_id: uuid.UUID,
    body: PurchaseOrderCreate,
    principal: CatalogWriter,
    session: SessionDep,
    wait: StoreWaitDep,
) -> PurchaseOrderOut:
    """A draft order to a supplier for this store (``catalog:manage``)."""
    await require_writable_store(session, principal, store_id, wait=wait)
    return await service.create_order(session, principal, store_id, body)


@orders.get("", responses=problem_responses(404))
async def list_purchase_orders(
    store_id: uuid.UUID,
    principal: PrincipalDep,
    session: SessionDep,
    params: CursorParamsDep,
    order_status: Annotated[PurchaseOrderStatus | None, Query(alias="status")] = None,
) -> Page[PurchaseOrderOut]:
    """The store's purchase orders, newest first."""
    await require_store(session, principal, store_id)
    stmt = scoped(sa.select(PurchaseOrder), PurchaseOrder, principal).where(
        PurchaseOrder.store_id == store_id
    )
    if order_status is not None:
        stmt = stmt.where(PurchaseOrder.status == order_status)
    page = await paginate(
        session,
        stmt,
        order_by=(PurchaseOrder.created_at, PurchaseOrder.id),
        params=params,
        descending=True,
    )
    ids = [order.id for order in page.items]
    lines: dict[uuid.UUID, list[PurchaseOrderLine]] = {i: [] for i in ids}
    if ids:
        for line in await session.scalars(
            scoped(sa.select(PurchaseOrderLine), PurchaseOrderLine, principal)
            .where(PurchaseOrderLine.purchase_order_id.in_(ids))
            .order_by(PurchaseOrderLine.product_id)
        ):
            lines[line.purchase_order_id].append(line)
    show_cost = sees_cost(principal)
    return Page[PurchaseOrderOut](
        items=[service.order_out(o, lines[o.id], show_cost=show_cost) for o in page.items],
        next_cursor=page.next_cursor,
    )


@orders.get("/{order_id}", responses=problem_responses(404))
async def get_purchase_order(
    store_id: uuid.UUID, order_id: uuid.UUID, principal: PrincipalDep, session: SessionDep
) -> PurchaseOrderOut:
    await require_store(session, principal, store_id)
    return await service.read_order(session, principal, store_id, order_id)


@orders.post("/{order_id}/send", responses=problem_responses(403, 404, 409, 422, 423))
async def send_purchase_order(
    store_id: uuid.UUID,
    order_id: uuid.UUID,
    body: Transition,
    principal: CatalogWriter,
    session: SessionDep,
) -> PurchaseOrderOut:
    """Draft → sent (``catalog:manage``); an order with tobacco records the supplier's
    licence."""
    await require_writable_store(session, principal, store_id)
    return await service.transition(session, principal, store_id, order_id, "send", body.version)


@orders.post("/{order_id}/cancel", responses=problem_responses(403, 404, 409, 423))
async def cancel_purchase_order(
    store_id: uuid.UUID,
    order_id: uuid.UUID,
    body: Transition,
    principal: CatalogWriter,
    session: SessionDep,
) -> PurchaseOrderOut:
    """Cancel what has not arrived (``catalog:manage``); what was received stays."""
    await require_writable_store(session, principal, store_id)
    return await service.transition(session, principal, store_id, order_id, "cancel", body.version)


@orders.post(
    "/{order_id}/receipts",
    status_code=status.HTTP_201_CREATED,
    dependencies=[Depends(Idempotency(required=True))],
    responses=problem_responses(400, 403, 404, 409, 422, 423),
)
async def receive_purchase_order(
    store_id: uuid.UUID,
    order_id: uuid.UUID,
    body: ReceiptIn,
    principal: StockAdjuster,
    session: SessionDep,
) -> ReceiptOut:
    """Goods arrived against the order, in whatever quantities (``inventory:adjust``;
    ``Idempotency-Key`` required): a stock-in with the order's number as document, and the
    received cost updates each product's moving-average cost."""
    await require_writable_store(session, principal, store_id)
    return await service.receive(session, principal, store_id, order_id, body)
