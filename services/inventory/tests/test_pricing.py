"""HQ price distribution: store override rules, store groups, price changes now or at a
local time in each store's timezone, applied by the background task with the usual events."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from inventory.pricing.service import apply_due
from servicekit.auth import Role
from servicekit.testing.tokens import bearer_headers
from servicekit.testing.wait import eventually

from .conftest import KEY, Harness


def _cny(amount: int) -> dict[str, Any]:
    return {"amount": amount, "currency": "CNY"}


def manager(merchant: uuid.UUID, store: uuid.UUID) -> dict[str, str]:
    return bearer_headers(
        KEY,
        merchant,
        scopes=frozenset({"catalog:manage", "inventory:adjust"}),
        store_ids=frozenset({store}),
        role=Role.STORE_MANAGER,
    )


async def test_a_store_overrides_only_what_hq_allows(harness: Harness) -> None:
    merchant = uuid.uuid4()
    store = await harness.store(merchant)
    fixed = await harness.product(merchant, store_override="forbidden")
    ranged = await harness.product(
        merchant, store_override="range", override_min=_cny(1000), override_max=_cny(1500)
    )
    refused = await harness.client.put(
        f"/v1/products/{fixed['id']}/store-prices/{store}",
        json={"version": 1, "price": _cny(900)},
        headers=manager(merchant, store),
    )
    assert refused.status_code == 403
    assert refused.json()["code"] == "store_override_forbidden"
    hq = await harness.client.put(
        f"/v1/products/{fixed['id']}/store-prices/{store}",
        json={"version": 1, "price": _cny(900)},
        headers=harness.auth(merchant),
    )
    assert hq.status_code == 200
    too_high = await harness.client.put(
        f"/v1/products/{ranged['id']}/store-prices/{store}",
        json={"version": 1, "price": _cny(1600)},
        headers=manager(merchant, store),
    )
    assert too_high.status_code == 422
    assert too_high.json()["errors"][0]["code"] == "price_out_of_range"
    within = await harness.client.put(
        f"/v1/products/{ranged['id']}/store-prices/{store}",
        json={"version": 1, "price": _cny(1400)},
        headers=manager(merchant, store),
    )
    assert within.status_code == 200
    # Loosening the rule is HQ's.
    loosen = await harness.client.patch(
        f"/v1/products/{fixed['id']}",
        json={"version": 2, "store_override": "allowed"},
        headers=manager(merchant, store),
    )
    assert loosen.status_code == 403


async def test_a_group_price_change_applies_at_once_to_its_stores_only(harness: Harness) -> None:
    merchant = uuid.uuid4()
    a, b, c = [await harness.store(merchant) for _ in range(3)]
    product = await harness.product(merchant)
    group = await harness.client.post(
        "/v1/store-groups",
        json={"name": "Pudong", "store_ids": [str(a), str(b)]},
        headers=harness.auth(merchant),
    )
    assert group.status_code == 201, group.text
    change = await harness.client.post(
        "/v1/price-changes",
        json={
            "store_group_id": group.json()["id"],
            "lines": [{"product_id": product["id"], "price": _cny(999)}],
        },
        headers=harness.auth(merchant),
    )
    assert change.status_code == 201, change.text
    assert change.json()["status"] == "applied"
    assert {s["store_id"] for s in change.json()["stores"]} == {str(a), str(b)}
    for store, expected in ((a, 999), (b, 999), (c, 1200)):
        read = await harness.client.get(
            f"/v1/products/{product['id']}",
            params={"store_id": str(store)},
            headers=harness.auth(merchant),
        )
        assert read.json()["effective_price"] == _cny(expected)
    events = await harness.wait_events("inventory.product.price_changed", merchant, 2)
    assert {e.payload["store_id"] for e in events} == {str(a), str(b)}
    assert sorted(e.payload["version"] for e in events) == [2, 3]

    # A store's manager sees the change as far as their store goes.
    seen = await harness.client.get(
        f"/v1/price-changes/{change.json()['id']}", headers=manager(merchant, a)
    )
    assert [s["store_id"] for s in seen.json()["stores"]] == [str(a)]
    store_manager = await harness.client.post(
        "/v1/price-changes",
        json={
            "store_group_id": group.json()["id"],
            "lines": [{"product_id": product["id"], "price": _cny(1)}],
        },
        headers=manager(merchant, a),
    )
    assert store_manager.status_code == 403
    foreign = await harness.client.post(
        "/v1/price-changes",
        json={
            "store_group_id": group.json()["id"],
            "lines": [{"product_id": product["id"], "price": _cny(1)}],
        },
        headers=harness.auth(uuid.uuid4()),
    )
    assert foreign.status_code == 422  # the product is not theirs either
    foreign_group = await harness.client.post(
        "/v1/store-groups",
        json={"name": "x", "store_ids": [str(a)]},
        headers=harness.auth(uuid.uuid4()),
    )
    assert foreign_group.status_code == 422


async def test_a_scheduled_change_follows_each_stores_timezone(harness: Harness) -> None:
    merchant = uuid.uuid4()
    shanghai = await harness.store(merchant, timezone="Asia/Shanghai")
    tokyo = await harness.store(merchant, timezone="Asia/Tokyo")
    product = await harness.product(merchant)
    due = await harness.client.post(
        "/v1/price-changes",
        json={
            "all_stores": True,
            "effective_at": "2026-01-01T00:00:00",
            "lines": [{"product_id": product["id"], "price": _cny(1500)}],
        },
        headers=harness.auth(merchant),
    )
    assert due.status_code == 201, due.text
    stores = {s["store_id"]: s for s in due.json()["stores"]}
    assert stores[str(shanghai)]["due_at"] == "2025-12-31T16:00:00Z"
    assert stores[str(tokyo)]["due_at"] == "2025-12-31T15:00:00Z"

    # Already due: the background task applies it and the tills hear of it.
    events = await harness.wait_events("inventory.product.price_changed", merchant, 2)
    assert {e.payload["store_id"] for e in events} == {str(shanghai), str(tokyo)}
    [updated] = await harness.wait_events("inventory.product.updated", merchant, 1)
    assert updated.payload["price"] == _cny(1500)

    async def applied() -> bool:
        read = await harness.client.get(
            f"/v1/price-changes/{due.json()['id']}", headers=harness.auth(merchant)
        )
        return bool(read.json()["status"] == "applied")

    await eventually(applied, timeout=10.0)


async def test_a_future_change_waits_and_a_cancelled_one_never_applies(harness: Harness) -> None:
    merchant = uuid.uuid4()
    store = await harness.store(merchant)
    product = await harness.product(merchant)
    body = {
        "all_stores": True,
        "effective_at": "2099-06-01T08:00:00",
        "lines": [{"product_id": product["id"], "price": _cny(1300)}],
    }
    later = await harness.client.post(
        "/v1/price-changes", json=body, headers=harness.auth(merchant)
    )
    cancelled = await harness.client.post(
        "/v1/price-changes",
        json={**body, "lines": [{"product_id": product["id"], "price": _cny(1)}]},
        headers=harness.auth(merchant),
    )
    assert later.json()["status"] == cancelled.json()["status"] == "scheduled"
    stop = await harness.client.post(
        f"/v1/price-changes/{cancelled.json()['id']}/cancel", headers=harness.auth(merchant)
    )
    assert stop.json()["status"] == "cancelled"

    async def price_in_store() -> dict[str, Any]:
        read = await harness.client.get(
            f"/v1/products/{product['id']}",
            params={"store_id": str(store)},
            headers=harness.auth(merchant),
        )
        result: dict[str, Any] = read.json()
        return result

    # 08:00 in Shanghai is midnight UTC. (Other tests' far-future changes may apply too.)
    async with harness.database.transaction() as session:
        await apply_due(session, datetime(2099, 5, 31, 23, 59, tzinfo=UTC))
    assert (await price_in_store())["effective_price"] == _cny(1200)
    async with harness.database.transaction() as session:
        assert await apply_due(session, datetime(2099, 6, 1, 0, 0, tzinfo=UTC)) >= 1
    read = await price_in_store()
    assert read["effective_price"] == _cny(1300)
    assert read["price"] == _cny(1300)
    again = await harness.client.post(
        f"/v1/price-changes/{later.json()['id']}/cancel", headers=harness.auth(merchant)
    )
    assert again.status_code == 409
