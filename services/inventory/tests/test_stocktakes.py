"""Stocktaking: book frozen at the start, counts from several devices at once, sales during
the count, the discrepancy report at cost and the manager's one-step approval."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from typing import Any

from servicekit.auth import Role
from servicekit.testing.tokens import bearer_headers

from .conftest import KEY, Harness
from .test_stock import paid


def _cny(amount: int) -> dict[str, Any]:
    return {"amount": amount, "currency": "CNY"}


def staff(role: Role, merchant: uuid.UUID, store: uuid.UUID) -> dict[str, str]:
    headers = bearer_headers(
        KEY,
        merchant,
        scopes=frozenset({"inventory:adjust"}),
        store_ids=frozenset({store}),
        role=role,
    )
    return {**headers, "Idempotency-Key": uuid.uuid4().hex}


async def stock_in(
    harness: Harness, merchant: uuid.UUID, store: uuid.UUID, pid: str, n: int
) -> None:
    response = await harness.client.post(
        f"/v1/stores/{store}/stock-in",
        json={"occurred_at": "2026-01-01T00:00:00Z", "lines": [{"product_id": pid, "quantity": n}]},
        headers=harness.keyed(merchant),
    )
    assert response.status_code == 201, response.text


async def test_a_category_count_from_several_devices_with_sales_during_it(
    harness: Harness,
) -> None:
    merchant = uuid.uuid4()
    store = await harness.store(merchant)
    headers = harness.auth(merchant)
    snacks = (
        await harness.client.post("/v1/categories", json={"name": "Snacks"}, headers=headers)
    ).json()
    chips = (
        await harness.client.post(
            "/v1/categories", json={"name": "Chips", "parent_id": snacks["id"]}, headers=headers
        )
    ).json()
    case_code = harness.ean13(f"69{uuid.uuid4().int % 10**10:010d}")
    a = await harness.product(merchant, category_id=snacks["id"], cost=_cny(300))
    b = await harness.product(
        merchant,
        category_id=chips["id"],
        cost=_cny(200),
        packs=[{"unit": "box", "quantity": 6, "barcode": case_code}],
    )
    outside = await harness.product(merchant, cost=_cny(100))
    for product, quantity in ((a, 20), (b, 5), (outside, 7)):
        await stock_in(harness, merchant, store, product["id"], quantity)

    started = await harness.client.post(
        f"/v1/stores/{store}/stocktakes", json={"category_id": snacks["id"]}, headers=headers
    )
    assert started.status_code == 201, started.text
    take = started.json()
    assert (take["status"], take["products"], take["counted"]) == ("open", 2, 0)
    again = await harness.client.post(f"/v1/stores/{store}/stocktakes", json={}, headers=headers)
    assert again.status_code == 409
    assert again.json()["code"] == "stocktake_already_open"

    start = datetime.fromisoformat(take["started_at"])
    counted_at = start + timedelta(minutes=10)
    url = f"/v1/stores/{store}/stocktakes/{take['id']}"
    # Eight scanners at once, two each of product A.
    responses = await asyncio.gather(
        *(
            harness.client.post(
                f"{url}/counts",
                json={
                    "device_id": f"pda-{i}",
                    "counted_at": counted_at.isoformat(),
                    "lines": [{"product_id": a["id"], "quantity": 2}],
                },
                headers=harness.keyed(merchant),
            )
            for i in range(8)
        )
    )
    assert [r.status_code for r in responses] == [200] * 8, [r.text for r in responses]
    # One box of six by its barcode, and a mis-scan taken back.
    boxes = await harness.client.post(
        f"{url}/counts",
        json={
            "counted_at": counted_at.isoformat(),
            "lines": [
                {"barcode": case_code, "quantity": 1},
                {"product_id": b["id"], "quantity": -1},
            ],
        },
        headers=harness.keyed(merchant),
    )
    assert boxes.status_code == 200, boxes.text
    assert boxes.json()["lines"] == [{"product_id": b["id"], "counted": 5}]
    for body, code in (
        ({"lines": [{"product_id": outside["id"], "quantity": 1}]}, "not_in_stocktake"),
        ({"lines": [{"product_id": b["id"], "quantity": -99}]}, "negative_count"),
    ):
        refused = await harness.client.post(
            f"{url}/counts", json=body, headers=harness.keyed(merchant)
        )
        assert refused.status_code == 422
        assert refused.json()["errors"][0]["code"] == code

    # One sale of A rung up before A was counted, one after.
    before = paid(store, [(a["id"], 1)], occurred_at=start + timedelta(minutes=5))
    after = paid(store, [(a["id"], 1)], occurred_at=start + timedelta(minutes=20))
    for sale in (before, after):
        await harness.publish(harness.envelope(sale, merchant, sale.order_id))
    await harness.wait_on_hand(merchant, store, a["id"], 18)

    report = await harness.client.get(f"{url}/report", headers=headers)
    assert report.status_code == 200
    lines = {line["product_id"]: line for line in report.json()["lines"]}
    line_a = lines[a["id"]]
    assert (line_a["book_quantity"], line_a["moved_since_start"], line_a["expected"]) == (
        20,
        -1,
        19,
    )
    assert (line_a["counted"], line_a["difference"]) == (16, -3)
    assert line_a["difference_value"] == _cny(-900)
    assert lines[b["id"]]["difference"] == 0
    assert report.json()["total_difference_value"] == [_cny(-900)]
    only = await harness.client.get(
        f"{url}/report", params={"only_differences": "true"}, headers=headers
    )
    assert [line["product_id"] for line in only.json()["lines"]] == [a["id"]]

    cashier = await harness.client.post(
        f"{url}/approve", json={"version": 1}, headers=staff(Role.CASHIER, merchant, store)
    )
    assert cashier.status_code == 403
    assert cashier.json()["code"] == "manager_approval_required"
    manager = staff(Role.STORE_MANAGER, merchant, store)
    approved = await harness.client.post(f"{url}/approve", json={"version": 1}, headers=manager)
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "approved"
    replay = await harness.client.post(f"{url}/approve", json={"version": 1}, headers=manager)
    assert replay.json() == approved.json()
    # Counted 16 absorbed the earlier sale; the later one still comes off.
    assert await harness.on_hand(merchant, store, a["id"]) == 15
    assert await harness.on_hand(merchant, store, b["id"]) == 5
    assert await harness.on_hand(merchant, store, outside["id"]) == 7
    closed = await harness.client.post(
        f"{url}/counts",
        json={"lines": [{"product_id": a["id"], "quantity": 1}]},
        headers=harness.keyed(merchant),
    )
    assert closed.status_code == 409
    assert closed.json()["code"] == "stocktake_approved"
    # The store may start the next one.
    nxt = await harness.client.post(f"/v1/stores/{store}/stocktakes", json={}, headers=headers)
    assert nxt.status_code == 201
    assert nxt.json()["products"] == 3


async def test_uncounted_products_keep_their_stock_and_cancel_posts_nothing(
    harness: Harness,
) -> None:
    merchant = uuid.uuid4()
    store = await harness.store(merchant)
    a, b = await harness.product(merchant), await harness.product(merchant)
    await stock_in(harness, merchant, store, a["id"], 4)
    await stock_in(harness, merchant, store, b["id"], 9)
    headers = harness.auth(merchant)
    take = (
        await harness.client.post(f"/v1/stores/{store}/stocktakes", json={}, headers=headers)
    ).json()
    url = f"/v1/stores/{store}/stocktakes/{take['id']}"
    counted = await harness.client.post(
        f"{url}/counts",
        json={"lines": [{"product_id": a["id"], "quantity": 3}]},
        headers=harness.keyed(merchant),
    )
    assert counted.status_code == 200
    report = (await harness.client.get(f"{url}/report", headers=headers)).json()
    assert report["uncounted"] == 1
    cancelled = await harness.client.post(f"{url}/cancel", json={"version": 1}, headers=headers)
    assert cancelled.json()["status"] == "cancelled"
    assert await harness.on_hand(merchant, store, a["id"]) == 4

    take = (
        await harness.client.post(f"/v1/stores/{store}/stocktakes", json={}, headers=headers)
    ).json()
    url = f"/v1/stores/{store}/stocktakes/{take['id']}"
    await harness.client.post(
        f"{url}/counts",
        json={"lines": [{"product_id": a["id"], "quantity": 3}]},
        headers=harness.keyed(merchant),
    )
    stale = await harness.client.post(
        f"{url}/approve", json={"version": 7}, headers=harness.keyed(merchant)
    )
    assert stale.status_code == 409
    assert stale.json()["code"] == "version_mismatch"
    approved = await harness.client.post(
        f"{url}/approve", json={"version": 1}, headers=harness.keyed(merchant)
    )
    assert approved.status_code == 200
    assert await harness.on_hand(merchant, store, a["id"]) == 3
    assert await harness.on_hand(merchant, store, b["id"]) == 9


async def test_another_merchants_stocktake_is_not_found(harness: Harness) -> None:
    merchant, intruder = uuid.uuid4(), uuid.uuid4()
    store = await harness.store(merchant)
    product = await harness.product(merchant)
    take = (
        await harness.client.post(
            f"/v1/stores/{store}/stocktakes", json={}, headers=harness.auth(merchant)
        )
    ).json()
    intruders_store = await harness.store(intruder)
    for url in (
        f"/v1/stores/{store}/stocktakes/{take['id']}",
        f"/v1/stores/{intruders_store}/stocktakes/{take['id']}",
    ):
        response = await harness.client.post(
            f"{url}/counts",
            json={"lines": [{"product_id": product["id"], "quantity": 1}]},
            headers=harness.keyed(intruder),
        )
        assert response.status_code == 404
    report = await harness.client.get(
        f"/v1/stores/{store}/stocktakes/{take['id']}/report", headers=harness.auth(merchant)
    )
    assert report.json()["lines"][0]["counted"] is None
