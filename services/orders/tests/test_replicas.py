"""The catalog, store and members replicas: applied by version in any order, never resurrected
by a replayed window, and keyed by merchant so one tenant's events never touch another's rows."""

from __future__ import annotations

import uuid
from typing import Any

from contracts.events.identity import StoreStatusChanged
from contracts.events.inventory import ProductCreated, ProductPriceChanged, ProductUpdated
from contracts.events.members import MemberCreated
from contracts.money import Money

CNY = "CNY"


def snapshot(
    cls: Any, product_id: uuid.UUID, version: int, price: int, name: str, status: str = "active"
) -> Any:
    return cls(
        product_id=product_id,
        version=version,
        sku="SKU",
        name=name,
        unit="each",
        price=Money.of(price, CNY),
        tax_rate_bps=0,
        status=status,
    )


async def total_of(harness: Any, merchant: uuid.UUID, store: uuid.UUID, product: uuid.UUID) -> Any:
    return await harness.place(merchant, store, [{"product_id": str(product), "quantity": 1}])


async def test_hq_price_before_the_product_survives_the_late_snapshot(harness: Any) -> None:
    merchant = uuid.uuid4()
    store = await harness.seed_store(merchant)
    product_id = uuid.uuid4()
    price = ProductPriceChanged(
        product_id=product_id, version=3, store_id=None, price=Money.of(1500, CNY)
    )
    await harness.publish_applied(harness.envelope(price, merchant, product_id, "inventory"))
    # Known only by its price: not on sale yet.
    early = await total_of(harness, merchant, store, product_id)
    assert early.status_code == 422
    assert early.json()["errors"][0]["code"] == "unknown_product"
    for event in (
        snapshot(ProductCreated, product_id, 1, 1000, "Tea"),
        snapshot(ProductUpdated, product_id, 2, 1200, "Green tea"),
    ):
        await harness.publish_applied(harness.envelope(event, merchant, product_id, "inventory"))
    placed = await total_of(harness, merchant, store, product_id)
    assert placed.status_code == 201, placed.text
    assert placed.json()["total"]["amount"] == 1500
    assert placed.json()["lines"][0]["name"] == "Green tea"
    # Replaying the whole window changes nothing.
    for event in (
        snapshot(ProductCreated, product_id, 1, 1000, "Tea"),
        ProductPriceChanged(
            product_id=product_id, version=3, store_id=None, price=Money.of(1500, CNY)
        ),
        snapshot(ProductUpdated, product_id, 2, 1200, "Green tea"),
    ):
        await harness.publish_applied(harness.envelope(event, merchant, product_id, "inventory"))
    again = await total_of(harness, merchant, store, product_id)
    assert again.json()["total"]["amount"] == 1500
    assert again.json()["lines"][0]["name"] == "Green tea"


async def test_a_deactivated_product_is_not_resurrected_by_a_replay(harness: Any) -> None:
    merchant = uuid.uuid4()
    store = await harness.seed_store(merchant)
    product_id = uuid.uuid4()
    off = snapshot(ProductUpdated, product_id, 2, 1000, "Tea", status="inactive")
    on = snapshot(ProductCreated, product_id, 1, 1000, "Tea")
    for event in (off, on):
        await harness.publish_applied(harness.envelope(event, merchant, product_id, "inventory"))
    refused = await total_of(harness, merchant, store, product_id)
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["code"] == "product_inactive"


async def test_the_same_product_id_under_two_merchants_stays_apart(harness: Any) -> None:
    first, second = uuid.uuid4(), uuid.uuid4()
    store_a = await harness.seed_store(first)
    store_b = await harness.seed_store(second)
    product_id = uuid.uuid4()
    await harness.publish_applied(
        harness.envelope(
            snapshot(ProductCreated, product_id, 1, 1000, "Tea"), first, product_id, "inventory"
        )
    )
    # A newer version from another merchant must not overwrite the first merchant's product.
    await harness.publish_applied(
        harness.envelope(
            snapshot(ProductCreated, product_id, 5, 1, "Cheap"), second, product_id, "inventory"
        )
    )
    hq = ProductPriceChanged(
        product_id=product_id, version=6, store_id=None, price=Money.of(2, CNY)
    )
    await harness.publish_applied(harness.envelope(hq, second, product_id, "inventory"))
    own_price = ProductPriceChanged(
        product_id=product_id, version=7, store_id=store_a, price=Money.of(3, CNY)
    )
    await harness.publish_applied(harness.envelope(own_price, second, product_id, "inventory"))
    a = await total_of(harness, first, store_a, product_id)
    b = await total_of(harness, second, store_b, product_id)
    assert (a.json()["lines"][0]["name"], a.json()["total"]["amount"]) == ("Tea", 1000)
    assert (b.json()["lines"][0]["name"], b.json()["total"]["amount"]) == ("Cheap", 2)


async def test_a_lock_before_the_creation_keeps_the_store_locked(harness: Any, kit: Any) -> None:
    merchant = uuid.uuid4()
    product_id = await harness.seed_product(merchant)
    store = uuid.uuid4()
    locked = StoreStatusChanged(
        store_id=store,
        merchant_id=merchant,
        status="read_only",
        previous_status="active",
        version=2,
    )
    await harness.publish_applied(harness.envelope(locked, merchant, store, "identity"))
    await harness.publish_applied(kit.store_created(merchant, store, version=1))
    response = await harness.place(
        merchant, store, [{"product_id": str(product_id), "quantity": 1}], seed_store=False
    )
    assert response.status_code == 423
    assert response.json()["code"] == "store_read_only"


async def test_members_replica_takes_a_creation_once(harness: Any) -> None:
    merchant, other = uuid.uuid4(), uuid.uuid4()
    store = await harness.seed_store(merchant)
    product_id = await harness.seed_product(merchant)
    member_id = uuid.uuid4()
    created = MemberCreated(member_id=member_id, level="silver")
    await harness.publish_applied(harness.envelope(created, other, member_id, "members"))
    lines = [{"product_id": str(product_id), "quantity": 1}]
    # Known under the other merchant only.
    refused = await harness.place(merchant, store, lines, member_id=str(member_id))
    assert refused.json()["code"] == "unknown_member"
    for _ in range(2):
        await harness.publish_applied(harness.envelope(created, merchant, member_id, "members"))
    placed = await harness.place(merchant, store, lines, member_id=str(member_id))
    assert placed.status_code == 201, placed.text


async def test_an_order_naming_a_product_not_yet_replicated_is_placed_on_retry(
    harness: Any,
) -> None:
    merchant = uuid.uuid4()
    store = await harness.seed_store(merchant)
    product_id = uuid.uuid4()
    body = {
        "id": str(uuid.uuid4()),
        "channel": "pos",
        "store_id": str(store),
        "occurred_at": "2026-03-01T12:00:00+00:00",
        "lines": [{"product_id": str(product_id), "quantity": 1}],
    }
    headers = {**harness.auth(merchant), "Idempotency-Key": "till-7-order-1"}
    early = await harness.client.post("/v1/orders", json=body, headers=headers)
    assert early.status_code == 422
    assert early.json()["errors"][0]["code"] == "unknown_product"
    # Inventory's announcement arrives a moment later; the till retries with the same key.
    created = snapshot(ProductCreated, product_id, 1, 1200, "Tea")
    await harness.publish_applied(harness.envelope(created, merchant, product_id, "inventory"))
    retried = await harness.client.post("/v1/orders", json=body, headers=headers)
    assert retried.status_code == 201, retried.text
    assert retried.json()["total"]["amount"] == 1200
