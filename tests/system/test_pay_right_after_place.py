"""A payment posted right after its order succeeds on the first try, even when the orders
events have not reached payments: payments reads the order through from orders."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from orders.models import CatalogProduct
from orders.models import Store as OrdersStore
from payments.models import OrderReplica

from .conftest import System, wait_for

pytestmark = pytest.mark.timeout(120)


async def test_payment_right_after_its_order_while_the_events_lag(system: System) -> None:
    merchant = await system.onboard()
    hq, cashier = merchant.hq, merchant.cashier
    store = uuid.UUID(merchant.store_id)

    async def store_known() -> bool:
        status = await system.orders.scalar(
            sa.select(OrdersStore.status).where(OrdersStore.store_id == store)
        )
        return bool(status == "active")

    await wait_for(store_known, "orders learns identity's store")
    product = await system.inventory.client.post(
        "/v1/products",
        json={"sku": "BUN-1", "name": "Steamed bun", "price": {"amount": 300, "currency": "CNY"}},
        headers={**hq.headers, "Idempotency-Key": f"bun-{merchant.id}"},
    )
    assert product.status_code == 201, product.text
    product_id = product.json()["id"]

    async def catalog_known() -> bool:
        found = await system.orders.scalar(
            sa.select(CatalogProduct.product_id).where(
                CatalogProduct.product_id == uuid.UUID(product_id)
            )
        )
        return found is not None

    await wait_for(catalog_known, "the product reaches orders")

    # Orders' events are held back: payments cannot have heard of the order.
    await system.orders.stop_relay()
    try:
        order_id = str(uuid.uuid4())
        placed = await system.orders.client.post(
            "/v1/orders",
            json={
                "id": order_id,
                "channel": "pos",
                "store_id": str(store),
                "occurred_at": datetime.now(UTC).isoformat(),
                "lines": [{"product_id": product_id, "quantity": 2}],
            },
            headers={**cashier.headers, "Idempotency-Key": f"place-{order_id}"},
        )
        assert placed.status_code == 201, placed.text
        paid = await system.payments.client.post(
            "/v1/payments",
            json={"order_id": order_id, "method": "cash", "amount": placed.json()["total"]},
            headers={**cashier.headers, "Idempotency-Key": f"pay-{order_id}"},
        )
        assert paid.status_code == 201, paid.text
        state = await system.payments.scalar(
            sa.select(OrderReplica.state).where(
                OrderReplica.merchant_id == uuid.UUID(merchant.id),
                OrderReplica.order_id == uuid.UUID(order_id),
            )
        )
        assert state == "open"
    finally:
        await system.orders.start_relay()

    async def order_paid() -> bool:
        response = await system.orders.client.get(f"/v1/orders/{order_id}", headers=cashier.headers)
        return bool(response.json()["status"] == "paid")

    await wait_for(order_paid, "orders counts the payment")
