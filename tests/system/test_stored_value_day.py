"""Stored value across the services on the real broker: a cashier takes a member's cash
recharge (payments), members credits it with the merchant's bonus tier, the member pays an
order from the account (payments asks, members debits, orders sees the order paid), a
second till's spend that the balance no longer covers is refused, and a refund goes back to
the account; payments, orders and members balance to the fen."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from orders.models import CatalogProduct
from orders.models import Store as OrdersStore

from .conftest import Merchant, System, wait_for

pytestmark = pytest.mark.timeout(180)


def cny(amount: int) -> dict[str, Any]:
    return {"amount": amount, "currency": "CNY"}


async def _ready_to_sell(system: System, merchant: Merchant, price: int) -> str:
    store = uuid.UUID(merchant.store_id)

    async def store_known() -> bool:
        status = await system.orders.scalar(
            sa.select(OrdersStore.status).where(OrdersStore.store_id == store)
        )
        return bool(status == "active")

    await wait_for(store_known, "orders learns identity's store")
    product = await system.inventory.client.post(
        "/v1/products",
        json={"sku": "CAKE-1", "name": "Cake", "price": cny(price)},
        headers={**merchant.hq.headers, "Idempotency-Key": f"cake-{merchant.id}"},
    )
    assert product.status_code == 201, product.text
    product_id: str = product.json()["id"]

    async def catalog_known() -> bool:
        found = await system.orders.scalar(
            sa.select(CatalogProduct.product_id).where(
                CatalogProduct.product_id == uuid.UUID(product_id)
            )
        )
        return found is not None

    await wait_for(catalog_known, "the product reaches orders")
    return product_id


async def _place(system: System, merchant: Merchant, product_id: str, quantity: int) -> str:
    order_id = str(uuid.uuid4())
    placed = await system.orders.client.post(
        "/v1/orders",
        json={
            "id": order_id,
            "channel": "pos",
            "store_id": merchant.store_id,
            "occurred_at": datetime.now(UTC).isoformat(),
            "lines": [{"product_id": product_id, "quantity": quantity}],
        },
        headers={**merchant.cashier.headers, "Idempotency-Key": f"place-{order_id}"},
    )
    assert placed.status_code == 201, placed.text
    return order_id


async def test_recharge_spend_refuse_and_refund_through_the_bus(system: System) -> None:
    merchant = await system.onboard(
        cashier_scopes=["orders:write", "members:write", "stored_value:recharge"]
    )
    hq, cashier, manager = merchant.hq, merchant.cashier, merchant.manager
    tier = await system.members.client.post(
        "/v1/stored-value/bonus-rules",
        json={"threshold": cny(10000), "bonus": cny(1000)},
        headers=hq.headers,
    )
    assert tier.status_code == 201, tier.text
    member = await system.members.client.post(
        "/v1/members",
        json={"phone": "+8613912345678", "name": "Han Meimei"},
        headers={**cashier.headers, "Idempotency-Key": f"member-{merchant.id}"},
    )
    assert member.status_code == 201, member.text
    member_id = member.json()["id"]

    async def account() -> dict[str, Any]:
        response = await system.members.client.get(
            f"/v1/members/{member_id}/stored-value", headers=cashier.headers
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def balance_is(principal: int, bonus: int) -> bool:
        held = (await account())["account"]
        return held is not None and (held["principal"], held["bonus"]) == (
            cny(principal),
            cny(bonus),
        )

    recharge = await system.payments.client.post(
        "/v1/payments",
        json={
            "purpose": "stored_value_recharge",
            "member_id": member_id,
            "store_id": merchant.store_id,
            "method": "cash",
            "amount": cny(10000),
        },
        headers={**cashier.headers, "Idempotency-Key": f"recharge-{member_id}"},
    )
    assert recharge.status_code == 201, recharge.text

    async def credited() -> bool:
        return await balance_is(10000, 1000)

    await wait_for(credited, "members credits the recharge with its bonus")

    product_id = await _ready_to_sell(system, merchant, 4000)
    order_a = await _place(system, merchant, product_id, 2)  # 80.00
    order_b = await _place(system, merchant, product_id, 1)  # 40.00: only 30.00 left after A

    async def pay(order_id: str, amount: int) -> dict[str, Any]:
        response = await system.payments.client.post(
            "/v1/payments",
            json={
                "order_id": order_id,
                "method": "stored_value",
                "member_id": member_id,
                "amount": cny(amount),
            },
            headers={**cashier.headers, "Idempotency-Key": f"pay-{order_id}"},
        )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        assert body["status"] == "pending"
        return body

    paid_a = await pay(order_a, 8000)

    async def payment_status(payment_id: str, status: str) -> bool:
        response = await system.payments.client.get(
            f"/v1/payments/{payment_id}", headers=cashier.headers
        )
        return bool(response.json()["status"] == status)

    async def a_succeeded() -> bool:
        return await payment_status(paid_a["id"], "succeeded")

    await wait_for(a_succeeded, "members debits the account and payments settles")
    paid_b = await pay(order_b, 4000)

    async def b_failed() -> bool:
        return await payment_status(paid_b["id"], "failed")

    await wait_for(b_failed, "members refuses a spend the balance does not cover")

    async def order_paid() -> bool:
        response = await system.orders.client.get(f"/v1/orders/{order_a}", headers=cashier.headers)
        return bool(response.json()["status"] == "paid")

    await wait_for(order_paid, "orders sees the stored-value payment")
    # Principal first: 80.00 took all 100.00 principal but 20.00, none of the bonus.
    assert await balance_is(2000, 1000)

    refund = await system.payments.client.post(
        f"/v1/payments/{paid_a['id']}/refunds",
        json={"amount": cny(8000)},
        headers={**manager.headers, "Idempotency-Key": f"refund-{paid_a['id']}"},
    )
    assert refund.status_code == 201, refund.text
    assert refund.json()["status"] == "pending"

    async def refunded() -> bool:
        return await payment_status(paid_a["id"], "refunded")

    await wait_for(refunded, "members credits the refund and confirms")

    async def restored() -> bool:
        return await balance_is(10000, 1000)

    await wait_for(restored, "the refund is back on the account")
    body = await account()
    assert [e["kind"] for e in body["items"]] == ["refund", "spend", "bonus", "recharge"]
    # To the fen: the ledger sums to the account; payments holds the recharge apart.
    principal = sum(e["principal"]["amount"] for e in body["items"])
    bonus = sum(e["bonus"]["amount"] for e in body["items"])
    assert (principal, bonus) == (10000, 1000)
    recharges = await system.payments.client.get(
        "/v1/payments",
        params={"purpose": "stored_value_recharge", "member_id": member_id},
        headers=cashier.headers,
    )
    assert [p["amount"] for p in recharges.json()["items"]] == [cny(10000)]
    assert await system.dead_letters(merchant.id) == []
