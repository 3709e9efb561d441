"""Suppliers and purchasing: suppliers with their contacts and cost prices, purchase orders
(draft → sent → partially received → received, or cancelled) and goods received against them.

A receipt is a stock-in whose document is the purchase order; its cost updates each product's
moving-average cost over the merchant's stock on hand. Tobacco is bought only from a supplier
holding a tobacco licence, and the licence goes on the order when it is sent.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.events.inventory import ProductUpdated
from contracts.ids import new_id
from contracts.money import Money
from inventory.catalog.service import (
    emit,
    pack_quantity,
    require_merchant_wide,
    sees_cost,
    snapshot,
)
from inventory.models import (
    Product,
    PurchaseOrder,
    PurchaseOrderLine,
    PurchaseReceipt,
    StockLevel,
    Supplier,
    SupplierProduct,
)
from inventory.purchasing.schemas import (
    Contact,
    PurchaseOrderCreate,
    PurchaseOrderLineOut,
    PurchaseOrderOut,
    ReceiptIn,
    ReceiptLineOut,
    ReceiptOut,
    SupplierCreate,
    SupplierOut,
    SupplierProductOut,
    SupplierProductSet,
    SupplierUpdate,
)
from inventory.stock.service import MAX_QUANTITY, Change, record_many
from servicekit.auth import Principal, scoped, scoped_to_merchant
from servicekit.errors import (
    Conflict,
    FieldError,
    Forbidden,
    IllegalState,
    NotFound,
    ValidationFailed,
    VersionMismatch,
)

# --- suppliers -------------------------------------------------------------------------------


def supplier_out(supplier: Supplier) -> SupplierOut:
    return SupplierOut(
        id=supplier.id,
        name=supplier.name,
        contacts=[Contact.model_validate(c) for c in supplier.contacts],
        tobacco_licence=supplier.tobacco_licence,
        status=supplier.status,  # type: ignore[arg-type]
        version=supplier.version,
    )


async def get_supplier(
    session: AsyncSession, principal: Principal, supplier_id: uuid.UUID, *, lock: bool = False
) -> Supplier:
    stmt = scoped(sa.select(Supplier), Supplier, principal).where(Supplier.id == supplier_id)
    if lock:
        stmt = stmt.with_for_update()
    supplier = (await session.execute(stmt)).scalar_one_or_none()
    if supplier is None:
        raise NotFound("Supplier not found.", code="supplier_not_found")
    return supplier


async def create_supplier(
    session: AsyncSession, principal: Principal, data: SupplierCreate
) -> SupplierOut:
    require_merchant_wide(principal)
    supplier = Supplier(
        merchant_id=principal.merchant_id,
        id=data.id or new_id(),
        name=data.name,
        contacts=[c.model_dump() for c in data.contacts],
        tobacco_licence=data.tobacco_licence,
        status="active",
        version=1,
    )
    try:
        # A savepoint, so the request's transaction survives to store the 409; the row
        # is added inside it, as opening one flushes what is pending.
        async with session.begin_nested():
            session.add(supplier)
            await session.flush()
    except IntegrityError:
        raise Conflict(
            "A supplier with this id already exists.", code="duplicate_supplier_id"
        ) from None
    return supplier_out(supplier)


async def update_supplier(
    session: AsyncSession, principal: Principal, supplier_id: uuid.UUID, data: SupplierUpdate
) -> SupplierOut:
    require_merchant_wide(principal)
    supplier = await get_supplier(session, principal, supplier_id, lock=True)
    if supplier.version != data.version:
        raise VersionMismatch(current_version=supplier.version)
    sent = data.model_fields_set - {"version"}
    for name in ("name", "status", "contacts"):
        if name in sent and getattr(data, name) is None:
            raise ValidationFailed([FieldError(name, "invalid", "must not be null.")])
    if "name" in sent and data.name is not None:
        supplier.name = data.name
    if "status" in sent and data.status is not None:
        supplier.status = data.status
    if "contacts" in sent and data.contacts is not None:
        supplier.contacts = [c.model_dump() for c in data.contacts]
    if "tobacco_licence" in sent:
        supplier.tobacco_licence = data.tobacco_licence
    supplier.version += 1
    await session.flush()
    return supplier_out(supplier)


async def _product(session: AsyncSession, principal: Principal, product_id: uuid.UUID) -> Product:
    product = (
        await session.execute(
            scoped(sa.select(Product), Product, principal).where(Product.id == product_id)
        )
    ).scalar_one_or_none()
    if product is None:
        raise NotFound("Product not found.")
    return product


async def set_supplier_product(
    session: AsyncSession,
    principal: Principal,
    supplier_id: uuid.UUID,
    product_id: uuid.UUID,
    data: SupplierProductSet,
) -> SupplierProductOut:
    require_merchant_wide(principal)
    supplier = await get_supplier(session, principal, supplier_id)
    product = await _product(session, principal, product_id)
    if data.cost.currency != product.currency:
        raise ValidationFailed(
            [FieldError("cost", "currency_mismatch", f"must be in {product.currency}.")]
        )
    if product.is_tobacco and supplier.tobacco_licence is None:
        raise ValidationFailed(
            [
                FieldError(
                    "product_id", "supplier_not_licensed", "Tobacco needs a licensed supplier."
                )
            ]
        )
    stmt = pg.insert(SupplierProduct).values(
        merchant_id=principal.merchant_id,
        supplier_id=supplier.id,
        product_id=product.id,
        currency=data.cost.currency,
        cost=data.cost.amount,
        supplier_sku=data.supplier_sku,
    )
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=["merchant_id", "supplier_id", "product_id"],
            set_={
                "currency": stmt.excluded.currency,
                "cost": stmt.excluded.cost,
                "supplier_sku": stmt.excluded.supplier_sku,
            },
        )
    )
    return SupplierProductOut(
        supplier_id=supplier.id,
        product_id=product.id,
        cost=data.cost,
        supplier_sku=data.supplier_sku,
    )


async def remove_supplier_product(
    session: AsyncSession, principal: Principal, supplier_id: uuid.UUID, product_id: uuid.UUID
) -> None:
    require_merchant_wide(principal)
    await get_supplier(session, principal, supplier_id)
    result = await session.execute(
        scoped(sa.delete(SupplierProduct), SupplierProduct, principal).where(
            SupplierProduct.supplier_id == supplier_id, SupplierProduct.product_id == product_id
        )
    )
    if result.rowcount == 0:  # type: ignore[attr-defined]
        raise NotFound("The supplier does not supply this product.")


def supplier_product_out(row: SupplierProduct) -> SupplierProductOut:
    return SupplierProductOut(
        supplier_id=row.supplier_id,
        product_id=row.product_id,
        cost=Money.of(row.cost, row.currency),
        supplier_sku=row.supplier_sku,
    )


# --- purchase orders ---------------------------------------------------------------------------


async def _lines(
    session: AsyncSession, merchant_id: uuid.UUID, order_id: uuid.UUID
) -> list[PurchaseOrderLine]:
    return list(
        (
            await session.scalars(
                scoped_to_merchant(sa.select(PurchaseOrderLine), PurchaseOrderLine, merchant_id)
                .where(PurchaseOrderLine.purchase_order_id == order_id)
                .order_by(PurchaseOrderLine.product_id)
            )
        ).all()
    )


def order_out(
    order: PurchaseOrder, lines: list[PurchaseOrderLine], *, show_cost: bool
) -> PurchaseOrderOut:
    total = sum(line.ordered * line.unit_cost for line in lines)
    return PurchaseOrderOut(
        id=order.id,
        number=order.number,
        supplier_id=order.supplier_id,
        store_id=order.store_id,
        status=order.status,  # type: ignore[arg-type]
        note=order.note,
        tobacco_licence=order.tobacco_licence,
        lines=[
            PurchaseOrderLineOut(
                product_id=line.product_id,
                ordered=line.ordered,
                received=line.received,
                unit_cost=Money.of(line.unit_cost, order.currency) if show_cost else None,
                pack_unit=line.pack_unit,
                pack_quantity=line.pack_quantity,
            )
            for line in lines
        ],
        total=Money.of(total, order.currency) if show_cost else None,
        version=order.version,
        created_at=order.created_at,
        updated_at=order.updated_at,
    )


async def read_order(
    session: AsyncSession, principal: Principal, store_id: uuid.UUID, order_id: uuid.UUID
) -> PurchaseOrderOut:
    order = await get_order(session, principal, store_id, order_id)
    lines = await _lines(session, principal.merchant_id, order.id)
    return order_out(order, lines, show_cost=sees_cost(principal))


async def get_order(
    session: AsyncSession,
    principal: Principal,
    store_id: uuid.UUID,
    order_id: uuid.UUID,
    *,
    lock: bool = False,
) -> PurchaseOrder:
    stmt = scoped(sa.select(PurchaseOrder), PurchaseOrder, principal).where(
        PurchaseOrder.id == order_id, PurchaseOrder.store_id == store_id
    )
    if lock:
        stmt = stmt.with_for_update()
    order = (await session.execute(stmt)).scalar_one_or_none()
    if order is None:
        raise NotFound("Purchase order not found.", code="purchase_order_not_found")
    return order


def _line_error(i: int, field: str, code: str, message: str) -> FieldError:
    return FieldError(f"lines[{i}].{field}", code, message)


async def create_order(
    session: AsyncSession, principal: Principal, store_id: uuid.UUID, data: PurchaseOrderCreate
) -> PurchaseOrderOut:
    supplier = await get_supplier(session, principal, data.supplier_id)
    if supplier.status != "active":
        raise ValidationFailed(
            [FieldError("supplier_id", "supplier_inactive", "The supplier is inactive.")]
        )
    ids = [line.product_id for line in data.lines]
    if len(set(ids)) != len(ids):
        raise ValidationFailed([FieldError("lines", "duplicate_product", "one line per product.")])
    products = {
        p.id: p
        for p in await session.scalars(
            scoped(sa.select(Product), Product, principal).where(Product.id.in_(ids))
        )
    }
    costs = {
        row.product_id: row
        for row in await session.scalars(
            scoped(sa.select(SupplierProduct), SupplierProduct, principal).where(
                SupplierProduct.supplier_id == supplier.id, SupplierProduct.product_id.in_(ids)
            )
        )
    }
    errors: list[FieldError] = []
    rows: list[PurchaseOrderLine] = []
    currencies: set[str] = set()
    order_id = data.id or new_id()
    for i, line in enumerate(data.lines):
        product = products.get(line.product_id)
        if product is None:
            errors.append(_line_error(i, "product_id", "unknown_product", "Not in the catalog."))
            continue
        if product.is_tobacco and supplier.tobacco_licence is None:
            errors.append(
                _line_error(
                    i, "product_id", "supplier_not_licensed", "Tobacco needs a licensed supplier."
                )
            )
            continue
        per_pack = pack_quantity(product, line.unit)
        if per_pack is None:
            errors.append(_line_error(i, "unit", "unknown_pack", "The product has no such pack."))
            continue
        if line.unit_cost is not None:
            if line.unit_cost.amount % per_pack:
                errors.append(
                    _line_error(
                        i, "unit_cost", "indivisible_cost", "not a whole amount per single."
                    )
                )
                continue
            currency, cost = line.unit_cost.currency, line.unit_cost.amount // per_pack
        elif line.product_id in costs:
            currency, cost = costs[line.product_id].currency, costs[line.product_id].cost
        else:
            errors.append(
                _line_error(i, "unit_cost", "missing_cost", "No cost given and none on file.")
            )
            continue
        if line.quantity * per_pack > MAX_QUANTITY:
            errors.append(_line_error(i, "quantity", "out_of_range", "too many."))
            continue
        currencies.add(currency)
        rows.append(
            PurchaseOrderLine(
                merchant_id=principal.merchant_id,
                purchase_order_id=order_id,
                product_id=product.id,
                ordered=line.quantity * per_pack,
                received=0,
                unit_cost=cost,
                pack_unit=line.unit if per_pack != 1 else None,
                pack_quantity=per_pack,
            )
        )
    if len(currencies) > 1:
        errors.append(FieldError("lines", "currency_mismatch", "one currency per order."))
    if errors:
        raise ValidationFailed(errors)
    now = datetime.now(UTC)
    order = PurchaseOrder(
        merchant_id=principal.merchant_id,
        id=order_id,
        number=data.number or f"PO-{order_id.hex[-12:].upper()}",
        supplier_id=supplier.id,
        store_id=store_id,
        status="draft",
        currency=currencies.pop(),
        note=data.note,
        version=1,
        created_at=now,
        updated_at=now,
    )
    try:
        # A savepoint, so the request's transaction survives to store the 409; the row
        # is added inside it, as opening one flushes what is pending.
        async with session.begin_nested():
            session.add(order)
            await session.flush()
    except IntegrityError as exc:
        if "uq_purchase_orders_number" in str(exc.orig):
            raise Conflict(
                "Another order has this number.", code="duplicate_order_number"
            ) from None
        raise Conflict("An order with this id exists.", code="duplicate_order_id") from None
    session.add_all(rows)
    await session.flush()
    return order_out(order, rows, show_cost=sees_cost(principal))


_NEXT = {
    "send": ({"draft"}, "sent"),
    "cancel": ({"draft", "sent", "partially_received"}, "cancelled"),
}


async def transition(
    session: AsyncSession,
    principal: Principal,
    store_id: uuid.UUID,
    order_id: uuid.UUID,
    action: str,
    version: int,
) -> PurchaseOrderOut:
    order = await get_order(session, principal, store_id, order_id, lock=True)
    if order.version != version:
        raise VersionMismatch(current_version=order.version)
    allowed, target = _NEXT[action]
    if order.status not in allowed:
        raise IllegalState(
            f"purchase_order_{order.status}", f"A {order.status} order cannot be {target}."
        )
    lines = await _lines(session, principal.merchant_id, order.id)
    if action == "send":
        supplier = await get_supplier(session, principal, order.supplier_id)
        tobacco = await session.scalar(
            scoped(sa.select(sa.func.count()), Product, principal).where(
                Product.id.in_([line.product_id for line in lines]), Product.is_tobacco
            )
        )
        if tobacco:
            if supplier.tobacco_licence is None:
                raise ValidationFailed(
                    [FieldError("supplier_id", "supplier_not_licensed", "Tobacco on the order.")]
                )
            order.tobacco_licence = supplier.tobacco_licence
    order.status = target
    order.version += 1
    order.updated_at = datetime.now(UTC)
    await session.flush()
    return order_out(order, lines, show_cost=sees_cost(principal))


async def _on_hand_everywhere(
    session: AsyncSession, merchant_id: uuid.UUID, product_ids: list[uuid.UUID]
) -> dict[uuid.UUID, int]:
    rows = await session.execute(
        scoped_to_merchant(
            sa.select(
                StockLevel.product_id,
                sa.func.sum(sa.func.greatest(StockLevel.on_hand, 0)),
            ),
            StockLevel,
            merchant_id,
        )
        .where(StockLevel.product_id.in_(product_ids))
        .group_by(StockLevel.product_id)
    )
    return {product_id: int(total) for product_id, total in rows}


def moving_average(old_cost: int | None, on_hand: int, quantity: int, unit_cost: int) -> int:
    """The average cost after ``quantity`` at ``unit_cost`` joins ``on_hand`` at ``old_cost``
    (stock below zero counts as none), rounded half up to the minor unit."""
    if old_cost is None or on_hand <= 0:
        return unit_cost
    total = old_cost * on_hand + unit_cost * quantity
    units = on_hand + quantity
    return (2 * total + units) // (2 * units)


async def receive(
    session: AsyncSession,
    principal: Principal,
    store_id: uuid.UUID,
    order_id: uuid.UUID,
    data: ReceiptIn,
) -> ReceiptOut:
    order = await get_order(session, principal, store_id, order_id, lock=True)
    if order.status not in ("sent", "partially_received"):
        raise IllegalState(
            f"purchase_order_{order.status}", f"A {order.status} order takes no receipts."
        )
    if not sees_cost(principal) and any(line.unit_cost is not None for line in data.lines):
        # The invoiced cost moves the product's average cost: a cost manager's figure.
        raise Forbidden(
            "Entering a received cost needs the 'catalog:manage' permission.",
            code="cost_entry_forbidden",
        )
    lines = {line.product_id: line for line in await _lines(session, order.merchant_id, order.id)}
    ids = sorted({line.product_id for line in data.lines})
    # Locked in id order, like the stock levels, so that two receipts never deadlock.
    products = {
        p.id: p
        for p in await session.scalars(
            scoped(sa.select(Product), Product, principal)
            .where(Product.id.in_(ids))
            .order_by(Product.id)
            .with_for_update()
        )
    }
    errors: list[FieldError] = []
    received: dict[uuid.UUID, tuple[int, int]] = {}
    for i, line in enumerate(data.lines):
        ordered = lines.get(line.product_id)
        product = products.get(line.product_id)
        if ordered is None or product is None:
            errors.append(_line_error(i, "product_id", "not_on_order", "Not on this order."))
            continue
        per_pack = pack_quantity(product, line.unit)
        if per_pack is None:
            errors.append(_line_error(i, "unit", "unknown_pack", "The product has no such pack."))
            continue
        if line.unit_cost is None:
            cost = ordered.unit_cost
        elif line.unit_cost.currency != order.currency:
            errors.append(_line_error(i, "unit_cost", "currency_mismatch", order.currency))
            continue
        elif line.unit_cost.amount % per_pack:
            errors.append(_line_error(i, "unit_cost", "indivisible_cost", "not whole per single."))
            continue
        else:
            cost = line.unit_cost.amount // per_pack
        quantity, cost_total = received.get(line.product_id, (0, 0))
        singles = line.quantity * per_pack
        received[line.product_id] = (quantity + singles, cost_total + singles * cost)
    for product_id, (quantity, _) in received.items():
        if lines[product_id].received + quantity > MAX_QUANTITY:
            errors.append(FieldError("lines", "out_of_range", f"too many of {product_id}."))
    if errors:
        raise ValidationFailed(errors)

    receipt_id = new_id()
    on_hand = await _on_hand_everywhere(session, order.merchant_id, list(received))
    show_cost = sees_cost(principal)
    out_lines: list[ReceiptLineOut] = []
    stored: list[dict[str, Any]] = []
    for product_id, (quantity, cost_total) in sorted(received.items()):
        product, line = products[product_id], lines[product_id]
        # Several lines of one product at different costs average into one unit cost.
        unit_cost = (2 * cost_total + quantity) // (2 * quantity)
        if product.currency == order.currency:
            average = moving_average(product.cost, on_hand.get(product_id, 0), quantity, unit_cost)
            if average != product.cost:
                # A new cost is a change of the product: orders freezes it on the lines it sells.
                product.cost = average
                product.version += 1
                product.updated_at = datetime.now(UTC)
                await emit(session, product, ProductUpdated(**snapshot(product)))
        line.received += quantity
        stored.append({"product_id": str(product_id), "quantity": quantity, "unit_cost": unit_cost})
        out_lines.append(
            ReceiptLineOut(
                product_id=product_id,
                quantity=quantity,
                unit_cost=Money.of(unit_cost, order.currency) if show_cost else None,
                ordered=line.ordered,
                received_total=line.received,
                difference=line.received - line.ordered,
                new_average_cost=(
                    Money.of(product.cost, product.currency)
                    if show_cost and product.cost is not None
                    else None
                ),
            )
        )
    session.add(
        PurchaseReceipt(
            merchant_id=order.merchant_id,
            id=receipt_id,
            purchase_order_id=order.id,
            store_id=order.store_id,
            occurred_at=data.occurred_at,
            lines=stored,
        )
    )
    await record_many(
        session,
        order.merchant_id,
        order.store_id,
        [
            Change(
                product_id=product_id,
                kind="stock_in",
                quantity=quantity,
                occurred_at=data.occurred_at,
                reason="purchase receipt",
                reference=order.number,
                source_key=f"receipt:{receipt_id}:{product_id}",
            )
            for product_id, (quantity, _) in sorted(received.items())
        ],
    )
    complete = all(line.received >= line.ordered for line in lines.values())
    order.status = "received" if complete or data.close else "partially_received"
    order.version += 1
    order.updated_at = datetime.now(UTC)
    await session.flush()
    all_lines = sorted(lines.values(), key=lambda line: line.product_id)
    return ReceiptOut(
        id=receipt_id,
        purchase_order=order_out(order, all_lines, show_cost=show_cost),
        lines=out_lines,
    )
