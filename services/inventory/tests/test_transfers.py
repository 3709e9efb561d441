"""Transfers between stores (request, ship, receive with a discrepancy), stock across the
stores a manager may see, the low-stock list and replenishment from recent sales."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from servicekit.auth import Role
from servicekit.testing.tokens import bearer_headers

from .conftest import KEY, Harness
from .test_stock import paid
from .test_stocktakes import stock_in


def manager_of(
    merchant: uuid.UUID, *stores: uuid.UUID, role: Role = Role.STORE_MANAGER
) -> dict[str, str]:
    headers = bearer_headers(
        KEY,
        merchant,
        scopes=frozenset({"inventory:adjust"}),
        store_ids=frozenset(stores),
        role=role,
    )
    return {**headers, "Idempotency-Key": uuid.uuid4().hex}


async def test_a_transfer_shipped_and_received_short(harness: Harness) -> None:
    merchant = uuid.uuid4()
    north, south = await harness.store(merchant), await harness.store(merchant)
    product = await harness.product(merchant)
    pid = product["id"]
    await stock_in(harness, merchant, north, pid, 20)

    requested = await harness.client.post(
        f"/v1/stores/{south}/transfers",
        json={"from_store_id": str(north), "lines": [{"product_id": pid, "quantity": 10}]},
        headers=manager_of(merchant, south),
    )
    assert requested.status_code == 201, requested.text
    transfer = requested.json()
    assert transfer["status"] == "requested"
    outgoing = await harness.client.get(
        f"/v1/stores/{north}/transfers",
        params={"direction": "out"},
        headers=manager_of(merchant, north),
    )
    assert [t["id"] for t in outgoing.json()["items"]] == [transfer["id"]]

    # The requesting store cannot ship from the other store's stock.
    not_theirs = await harness.client.post(
        f"/v1/stores/{north}/transfers/{transfer['id']}/ship",
        json={"version": 1},
        headers=manager_of(merchant, south),
    )
    assert not_theirs.status_code == 404
    wrong_end = await harness.client.post(
        f"/v1/stores/{south}/transfers/{transfer['id']}/ship",
        json={"version": 1},
        headers=manager_of(merchant, south),
    )
    assert wrong_end.status_code == 409
    assert wrong_end.json()["code"] == "not_the_shipping_store"

    shipped = await harness.client.post(
        f"/v1/stores/{north}/transfers/{transfer['id']}/ship",
        json={"version": 1, "lines": [{"product_id": pid, "quantity": 8}]},
        headers=manager_of(merchant, north),
    )
    assert shipped.status_code == 200, shipped.text
    assert shipped.json()["lines"][0]["shipped"] == 8
    assert await harness.on_hand(merchant, north, pid) == 12

    across = await harness.client.get(
        "/v1/stock", params={"product_id": pid}, headers=harness.auth(merchant)
    )
    assert across.status_code == 200
    by_store = {item["store_id"]: item for item in across.json()["items"]}
    assert by_store[str(north)]["on_hand"] == 12
    assert by_store[str(south)]["in_transit"] == 8
    regional = await harness.client.get(
        "/v1/stock",
        params={"product_id": pid},
        headers=manager_of(merchant, north, role=Role.REGIONAL_MANAGER),
    )
    assert [item["store_id"] for item in regional.json()["items"]] == [str(north)]

    receive_key = manager_of(merchant, south)
    body = {"version": 2, "lines": [{"product_id": pid, "quantity": 7}]}
    url = f"/v1/stores/{south}/transfers/{transfer['id']}/receive"
    received = await harness.client.post(url, json=body, headers=receive_key)
    assert received.status_code == 200, received.text
    [line] = received.json()["lines"]
    assert (line["requested"], line["shipped"], line["received"], line["discrepancy"]) == (
        10,
        8,
        7,
        -1,
    )
    again = await harness.client.post(url, json=body, headers=receive_key)
    assert again.json() == received.json()
    twice = await harness.client.post(url, json=body, headers=manager_of(merchant, south))
    assert twice.status_code == 409
    assert await harness.on_hand(merchant, south, pid) == 7
    across = await harness.client.get(
        "/v1/stock", params={"product_id": pid}, headers=harness.auth(merchant)
    )
    assert all(item["in_transit"] == 0 for item in across.json()["items"])
    moves = await harness.client.get(
        f"/v1/stores/{south}/movements",
        params={"kind": "transfer_in"},
        headers=harness.auth(merchant),
    )
    assert [m["quantity"] for m in moves.json()["items"]] == [7]


async def test_transfers_stay_within_the_merchant(harness: Harness) -> None:
    merchant, intruder = uuid.uuid4(), uuid.uuid4()
    mine, theirs = await harness.store(merchant), await harness.store(intruder)
    product = await harness.product(merchant)
    refused = await harness.client.post(
        f"/v1/stores/{mine}/transfers",
        json={
            "from_store_id": str(theirs),
            "lines": [{"product_id": product["id"], "quantity": 1}],
        },
        headers=harness.auth(merchant),
    )
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["code"] == "unknown_store"
    other = await harness.store(merchant)
    transfer = (
        await harness.client.post(
            f"/v1/stores/{mine}/transfers",
            json={
                "from_store_id": str(other),
                "lines": [{"product_id": product["id"], "quantity": 1}],
            },
            headers=harness.auth(merchant),
        )
    ).json()
    for url in (
        f"/v1/stores/{theirs}/transfers/{transfer['id']}",
        f"/v1/stores/{mine}/transfers/{transfer['id']}",
    ):
        assert (await harness.client.get(url, headers=harness.auth(intruder))).status_code == 404
    # A third store of the same merchant is neither end of it.
    third = await harness.store(merchant)
    response = await harness.client.get(
        f"/v1/stores/{third}/transfers/{transfer['id']}", headers=harness.auth(merchant)
    )
    assert response.status_code == 404
    cancelled = await harness.client.post(
        f"/v1/stores/{other}/transfers/{transfer['id']}/cancel",
        json={"version": 1},
        headers=harness.auth(merchant),
    )
    assert cancelled.json()["status"] == "cancelled"


async def test_low_stock_list_and_replenishment_from_recent_sales(harness: Harness) -> None:
    merchant = uuid.uuid4()
    store, other = await harness.store(merchant), await harness.store(merchant)
    fast = await harness.product(merchant, packs=[{"unit": "case", "quantity": 12}])
    slow = await harness.product(merchant)
    for product in (fast, slow):
        await stock_in(harness, merchant, store, product["id"], 20)
    threshold = await harness.client.put(
        f"/v1/stores/{store}/stock/{slow['id']}/threshold",
        json={"threshold": 25},
        headers=harness.auth(merchant),
    )
    assert threshold.status_code == 200
    yesterday = datetime.now(UTC) - timedelta(days=1)
    sale = paid(store, [(fast["id"], 14)], occurred_at=yesterday)
    await harness.publish(harness.envelope(sale, merchant, sale.order_id))
    await harness.wait_on_hand(merchant, store, fast["id"], 6)
    # A transfer already on its way counts as stock.
    await stock_in(harness, merchant, other, fast["id"], 10)
    transfer = (
        await harness.client.post(
            f"/v1/stores/{store}/transfers",
            json={
                "from_store_id": str(other),
                "lines": [{"product_id": fast["id"], "quantity": 2}],
            },
            headers=harness.auth(merchant),
        )
    ).json()
    shipped = await harness.client.post(
        f"/v1/stores/{other}/transfers/{transfer['id']}/ship",
        json={"version": 1},
        headers=harness.keyed(merchant),
    )
    assert shipped.status_code == 200

    low = await harness.client.get(
        f"/v1/stores/{store}/stock", params={"low": "true"}, headers=harness.auth(merchant)
    )
    assert [item["product_id"] for item in low.json()["items"]] == [slow["id"]]

    suggestion = await harness.client.get(
        f"/v1/stores/{store}/replenishment",
        params={"days": 7, "cover_days": 14},
        headers=harness.auth(merchant),
    )
    assert suggestion.status_code == 200
    items = {item["product_id"]: item for item in suggestion.json()["items"]}
    # 14 sold in 7 days is 2 a day; 28 for two weeks, less 6 on hand and 2 on the way.
    assert (items[fast["id"]]["target"], items[fast["id"]]["suggested"]) == (28, 20)
    assert (items[fast["id"]]["pack_unit"], items[fast["id"]]["packs"]) == ("case", 2)
    # No sales, but below its threshold: back above it.
    assert (items[slow["id"]]["target"], items[slow["id"]]["suggested"]) == (26, 6)
