"""Suppliers, purchase orders and receiving against them: packs, differing quantities, the
moving-average cost, tobacco licences, retries and concurrent receipts."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from servicekit.auth import Role
from servicekit.testing.tokens import bearer_headers

from .conftest import KEY, Harness

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC).isoformat()
T1 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC).isoformat()


def _cny(amount: int) -> dict[str, Any]:
    return {"amount": amount, "currency": "CNY"}


async def supplier(harness: Harness, merchant: uuid.UUID, **fields: Any) -> dict[str, Any]:
    response = await harness.client.post(
        "/v1/suppliers",
        json={
            "name": "Kunming Tea Co.",
            "contacts": [{"name": "Li Wei", "role": "sales", "phone": "+8613800000000"}],
            **fields,
        },
        headers=harness.auth(merchant),
    )
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def purchase_order(
    harness: Harness, merchant: uuid.UUID, store: uuid.UUID, body: dict[str, Any]
) -> dict[str, Any]:
    response = await harness.client.post(
        f"/v1/stores/{store}/purchase-orders", json=body, headers=harness.auth(merchant)
    )
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def send(harness: Harness, merchant: uuid.UUID, order: dict[str, Any]) -> dict[str, Any]:
    response = await harness.client.post(
        f"/v1/stores/{order['store_id']}/purchase-orders/{order['id']}/send",
        json={"version": order["version"]},
        headers=harness.auth(merchant),
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def test_an_order_received_in_two_deliveries_updates_stock_and_average_cost(
    harness: Harness,
) -> None:
    merchant = uuid.uuid4()
    store = await harness.store(merchant)
    product = await harness.product(
        merchant, unit="bottle", cost=_cny(500), packs=[{"unit": "case", "quantity": 24}]
    )
    pid = product["id"]
    seed = await harness.client.post(
        f"/v1/stores/{store}/stock-in",
        json={"occurred_at": T0, "lines": [{"product_id": pid, "quantity": 10}]},
        headers=harness.keyed(merchant),
    )
    assert seed.status_code == 201
    vendor = await supplier(harness, merchant)
    cost = await harness.client.put(
        f"/v1/suppliers/{vendor['id']}/products/{pid}",
        json={"cost": _cny(450), "supplier_sku": "KT-1"},
        headers=harness.auth(merchant),
    )
    assert cost.status_code == 200, cost.text

    order = await purchase_order(
        harness,
        merchant,
        store,
        {
            "supplier_id": vendor["id"],
            "lines": [{"product_id": pid, "quantity": 2, "unit": "case"}],
        },
    )
    assert order["status"] == "draft"
    assert order["lines"][0]["ordered"] == 48
    assert order["lines"][0]["unit_cost"] == _cny(450)
    assert order["total"] == _cny(48 * 450)

    early = await harness.client.post(
        f"/v1/stores/{store}/purchase-orders/{order['id']}/receipts",
        json={"occurred_at": T1, "lines": [{"product_id": pid, "quantity": 1}]},
        headers=harness.keyed(merchant),
    )
    assert early.status_code == 409
    assert early.json()["code"] == "purchase_order_draft"

    order = await send(harness, merchant, order)
    assert order["status"] == "sent"
    headers = harness.keyed(merchant)
    body = {"occurred_at": T1, "lines": [{"product_id": pid, "quantity": 30}]}
    url = f"/v1/stores/{store}/purchase-orders/{order['id']}/receipts"
    first = await harness.client.post(url, json=body, headers=headers)
    assert first.status_code == 201, first.text
    receipt = first.json()
    assert receipt["purchase_order"]["status"] == "partially_received"
    [line] = receipt["lines"]
    assert (line["quantity"], line["received_total"], line["difference"]) == (30, 30, -18)
    # (10 x 5.00 + 30 x 4.50) / 40 = 4.625, rounded half up.
    assert line["new_average_cost"] == _cny(463)
    # A retry of the same delivery changes nothing more.
    again = await harness.client.post(url, json=body, headers=headers)
    assert again.status_code == 201
    assert again.json() == receipt
    assert await harness.on_hand(merchant, store, pid) == 40

    # The rest arrives as one case at a different invoiced price, one more single than ordered.
    rest = await harness.client.post(
        url,
        json={
            "occurred_at": T1,
            "lines": [
                {"product_id": pid, "quantity": 1, "unit": "case", "unit_cost": _cny(24 * 480)},
                {"product_id": pid, "quantity": 1, "unit_cost": _cny(480)},
            ],
        },
        headers=harness.keyed(merchant),
    )
    assert rest.status_code == 201, rest.text
    assert rest.json()["purchase_order"]["status"] == "received"
    assert rest.json()["lines"][0]["difference"] == 7
    assert await harness.on_hand(merchant, store, pid) == 65
    movements = await harness.client.get(
        f"/v1/stores/{store}/movements",
        params={"kind": "stock_in"},
        headers=harness.auth(merchant),
    )
    receipts = [m for m in movements.json()["items"] if m["reason"] == "purchase receipt"]
    assert {m["reference"] for m in receipts} == {order["number"]}
    assert sorted(m["quantity"] for m in receipts) == [25, 30]
    read = await harness.client.get(f"/v1/products/{pid}", headers=harness.auth(merchant))
    # (40 x 4.63 + 25 x 4.80) / 65 = 4.6954 → 4.70.
    assert read.json()["cost"] == _cny(470)
    closed = await harness.client.post(url, json=body, headers=harness.keyed(merchant))
    assert closed.status_code == 409
    assert closed.json()["code"] == "purchase_order_received"


async def test_a_receipt_announces_the_new_average_cost_and_a_retry_does_not(
    harness: Harness,
) -> None:
    merchant = uuid.uuid4()
    store = await harness.store(merchant)
    product = await harness.product(merchant, cost=_cny(500))
    pid = product["id"]
    created = await harness.wait_events("inventory.product.created", merchant, 1)
    assert created[0].payload["cost"] == _cny(500)
    seed = await harness.client.post(
        f"/v1/stores/{store}/stock-in",
        json={"occurred_at": T0, "lines": [{"product_id": pid, "quantity": 10}]},
        headers=harness.keyed(merchant),
    )
    assert seed.status_code == 201
    vendor = await supplier(harness, merchant)
    order = await purchase_order(
        harness,
        merchant,
        store,
        {
            "supplier_id": vendor["id"],
            "lines": [
                {"product_id": pid, "quantity": 20, "unit_cost": _cny(400)},
            ],
        },
    )
    order = await send(harness, merchant, order)
    url = f"/v1/stores/{store}/purchase-orders/{order['id']}/receipts"
    body = {"occurred_at": T1, "lines": [{"product_id": pid, "quantity": 10}]}
    headers = harness.keyed(merchant)
    first = await harness.client.post(url, json=body, headers=headers)
    assert first.status_code == 201, first.text
    again = await harness.client.post(url, json=body, headers=headers)
    assert again.json() == first.json()
    # (10 x 5.00 + 10 x 4.00) / 20 = 4.50, announced with a new version of the product.
    [updated] = await harness.wait_events("inventory.product.updated", merchant, 1)
    assert updated.payload["cost"] == _cny(450)
    assert updated.payload["version"] == product["version"] + 1
    read = await harness.client.get(f"/v1/products/{pid}", headers=harness.auth(merchant))
    assert read.json()["version"] == updated.payload["version"]
    # The rest at the same average cost changes no cost, so nothing is announced.
    same = await harness.client.post(
        url,
        json={
            "occurred_at": T1,
            "lines": [{"product_id": pid, "quantity": 10, "unit_cost": _cny(450)}],
        },
        headers=harness.keyed(merchant),
    )
    assert same.status_code == 201, same.text
    assert same.json()["lines"][0]["new_average_cost"] == _cny(450)
    # Read from the outbox, written in the receipt's transaction: nothing waits on the relay.
    async with harness.database.transaction() as session:
        written = await session.scalar(
            sa.text(
                "SELECT count(*) FROM outbox WHERE type = 'inventory.product.updated' "
                "AND aggregateid = :pid"
            ),
            {"pid": pid},
        )
    assert written == 1


async def test_concurrent_receipts_both_count(harness: Harness) -> None:
    merchant = uuid.uuid4()
    store = await harness.store(merchant)
    product = await harness.product(merchant)
    vendor = await supplier(harness, merchant)
    order = await purchase_order(
        harness,
        merchant,
        store,
        {
            "supplier_id": vendor["id"],
            "lines": [{"product_id": product["id"], "quantity": 10, "unit_cost": _cny(100)}],
        },
    )
    order = await send(harness, merchant, order)
    url = f"/v1/stores/{store}/purchase-orders/{order['id']}/receipts"
    responses = await asyncio.gather(
        *(
            harness.client.post(
                url,
                json={"occurred_at": T1, "lines": [{"product_id": product["id"], "quantity": 5}]},
                headers=harness.keyed(merchant),
            )
            for _ in range(2)
        )
    )
    assert [r.status_code for r in responses] == [201, 201]
    final = await harness.client.get(
        f"/v1/stores/{store}/purchase-orders/{order['id']}", headers=harness.auth(merchant)
    )
    assert final.json()["status"] == "received"
    assert final.json()["lines"][0]["received"] == 10
    assert await harness.on_hand(merchant, store, product["id"]) == 10


async def test_tobacco_is_bought_only_from_a_licensed_supplier(harness: Harness) -> None:
    merchant = uuid.uuid4()
    store = await harness.store(merchant)
    cigarettes = await harness.product(merchant, is_tobacco=True, tobacco_code="6901028075022")
    unlicensed = await supplier(harness, merchant)
    line = {"product_id": cigarettes["id"], "quantity": 10, "unit_cost": _cny(1500)}
    refused = await harness.client.post(
        f"/v1/stores/{store}/purchase-orders",
        json={"supplier_id": unlicensed["id"], "lines": [line]},
        headers=harness.auth(merchant),
    )
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["code"] == "supplier_not_licensed"
    cost = await harness.client.put(
        f"/v1/suppliers/{unlicensed['id']}/products/{cigarettes['id']}",
        json={"cost": _cny(1500)},
        headers=harness.auth(merchant),
    )
    assert cost.status_code == 422

    licensed = await supplier(harness, merchant, tobacco_licence="YC-310101-0001")
    order = await purchase_order(
        harness, merchant, store, {"supplier_id": licensed["id"], "lines": [line]}
    )
    order = await send(harness, merchant, order)
    assert order["tobacco_licence"] == "YC-310101-0001"

    # A licence withdrawn after an order was drafted stops it from being sent.
    draft = await purchase_order(
        harness, merchant, store, {"supplier_id": licensed["id"], "lines": [line]}
    )
    withdrawn = await harness.client.patch(
        f"/v1/suppliers/{licensed['id']}",
        json={"version": 1, "tobacco_licence": None},
        headers=harness.auth(merchant),
    )
    assert withdrawn.status_code == 200
    blocked = await harness.client.post(
        f"/v1/stores/{store}/purchase-orders/{draft['id']}/send",
        json={"version": 1},
        headers=harness.auth(merchant),
    )
    assert blocked.status_code == 422


async def test_purchasing_is_scoped_to_the_merchant_and_the_callers_stores(
    harness: Harness,
) -> None:
    merchant, intruder = uuid.uuid4(), uuid.uuid4()
    mine, other_store = await harness.store(merchant), await harness.store(merchant)
    product = await harness.product(merchant, cost=_cny(300))
    vendor = await supplier(harness, merchant)
    body = {
        "supplier_id": vendor["id"],
        "lines": [{"product_id": product["id"], "quantity": 3, "unit_cost": _cny(300)}],
    }
    order = await purchase_order(harness, merchant, other_store, body)

    # Another merchant cannot name the supplier or the products.
    intruders_store = await harness.store(intruder)
    foreign = await harness.client.post(
        f"/v1/stores/{intruders_store}/purchase-orders", json=body, headers=harness.auth(intruder)
    )
    assert foreign.status_code == 404
    assert foreign.json()["code"] == "supplier_not_found"

    manager = bearer_headers(
        KEY,
        merchant,
        scopes=frozenset({"catalog:manage", "inventory:adjust"}),
        store_ids=frozenset({mine}),
        role=Role.STORE_MANAGER,
    )
    # A store manager orders for their own store, not for HQ's list of suppliers.
    own = await harness.client.post(
        f"/v1/stores/{mine}/purchase-orders", json=body, headers=manager
    )
    assert own.status_code == 201
    new_supplier = await harness.client.post("/v1/suppliers", json={"name": "x"}, headers=manager)
    assert new_supplier.status_code == 403
    theirs = await harness.client.get(
        f"/v1/stores/{other_store}/purchase-orders/{order['id']}", headers=manager
    )
    assert theirs.status_code == 404
    # Naming the order under the manager's own store does not find it either.
    disguised = await harness.client.get(
        f"/v1/stores/{mine}/purchase-orders/{order['id']}", headers=manager
    )
    assert disguised.status_code == 404

    cashier = bearer_headers(
        KEY,
        merchant,
        scopes=frozenset({"orders:write"}),
        store_ids=frozenset({mine}),
        role=Role.CASHIER,
    )
    listed = await harness.client.get(f"/v1/stores/{mine}/purchase-orders", headers=cashier)
    assert listed.status_code == 200
    assert all(item["total"] is None for item in listed.json()["items"])
    assert len(listed.json()["items"]) == 1


async def test_store_staff_receive_goods_but_only_cost_managers_enter_costs(
    harness: Harness,
) -> None:
    merchant = uuid.uuid4()
    store = await harness.store(merchant)
    product = await harness.product(merchant, cost=_cny(100))
    vendor = await supplier(harness, merchant)
    order = await purchase_order(
        harness,
        merchant,
        store,
        {
            "supplier_id": vendor["id"],
            "lines": [{"product_id": product["id"], "quantity": 4, "unit_cost": _cny(100)}],
        },
    )
    order = await send(harness, merchant, order)
    clerk = {
        **bearer_headers(
            KEY,
            merchant,
            scopes=frozenset({"inventory:adjust"}),
            store_ids=frozenset({store}),
            role=Role.STORE_MANAGER,
        ),
        "Idempotency-Key": uuid.uuid4().hex,
    }
    url = f"/v1/stores/{store}/purchase-orders/{order['id']}/receipts"
    line = {"product_id": product["id"], "quantity": 4}
    priced = await harness.client.post(
        url, json={"occurred_at": T1, "lines": [{**line, "unit_cost": _cny(1)}]}, headers=clerk
    )
    assert priced.status_code == 403
    assert priced.json()["code"] == "cost_entry_forbidden"
    clerk["Idempotency-Key"] = uuid.uuid4().hex
    plain = await harness.client.post(url, json={"occurred_at": T1, "lines": [line]}, headers=clerk)
    assert plain.status_code == 201, plain.text
    assert plain.json()["lines"][0]["unit_cost"] is None
    assert plain.json()["purchase_order"]["status"] == "received"
