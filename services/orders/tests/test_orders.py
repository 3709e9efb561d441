"""Orders: the catalog replica, placement, the state machine, payments, refunds, kitchen
tickets, locked stores and tenancy."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from contracts.events.inventory import ProductPriceChanged, ProductUpdated
from contracts.money import Money
from servicekit.testing.wait import eventually


async def test_replica_applies_newer_versions_only(harness: Any) -> None:
    merchant, store = uuid.uuid4(), uuid.uuid4()
    product_id = await harness.seed_product(merchant, price=1000)

    def updated(version: int, price: int, name: str) -> ProductUpdated:
        return ProductUpdated(
            product_id=product_id,
            version=version,
            sku="S",
            name=name,
            unit="each",
            price=Money.of(price, "CNY"),
            tax_rate_bps=0,
            status="active",
        )

    envelope = harness.envelope
    await harness.publish(envelope(updated(3, 1500, "Ramen"), merchant, product_id, "inventory"))
    await harness.publish(envelope(updated(2, 1200, "Stale"), merchant, product_id, "inventory"))
    # A store price at version 4, then a stale removal at version 3 that must not apply.
    store_price = ProductPriceChanged(
        product_id=product_id, version=4, store_id=store, price=Money.of(800, "CNY")
    )
    stale_removal = ProductPriceChanged(
        product_id=product_id, version=3, store_id=store, price=None
    )
    await harness.publish(envelope(store_price, merchant, product_id, "inventory"))
    await harness.publish(envelope(stale_removal, merchant, product_id, "inventory"))
    await asyncio.sleep(0.3)
    assert await harness.replica_version(product_id) == 3
    here = await harness.place(merchant, store, [{"product_id": str(product_id), "quantity": 1}])
    elsewhere = await harness.place(
        merchant, uuid.uuid4(), [{"product_id": str(product_id), "quantity": 2}]
    )
    assert here.status_code == 201, here.text
    assert here.json()["lines"][0]["name"] == "Ramen"
    assert here.json()["total"] == {"amount": 800, "currency": "CNY"}
    assert elsewhere.json()["total"] == {"amount": 3000, "currency": "CNY"}


async def test_same_client_id_twice_gives_one_order(harness: Any) -> None:
    merchant, store = uuid.uuid4(), uuid.uuid4()
    product_id = await harness.seed_product(merchant)
    order_id = uuid.uuid4()
    lines = [{"product_id": str(product_id), "quantity": 2, "notes": "no onion"}]
    first, again = await asyncio.gather(
        harness.place(merchant, store, lines, order_id=order_id),
        harness.place(merchant, store, lines, order_id=order_id),
    )
    assert sorted([first.status_code, again.status_code]) == [200, 201]
    assert first.json()["lines"] == again.json()["lines"]
    third = await harness.place(merchant, store, lines, order_id=order_id)
    assert third.status_code == 200
    listed = await harness.client.get("/v1/orders", headers=harness.auth(merchant))
    assert [o["id"] for o in listed.json()["items"]] == [str(order_id)]
    await harness.wait_events("orders.order.placed", merchant, 1)
    await asyncio.sleep(0.2)
    assert len(harness.events("orders.order.placed", merchant)) == 1
    different = await harness.place(
        merchant, store, [{"product_id": str(product_id), "quantity": 3}], order_id=order_id
    )
    assert different.status_code == 409
    assert different.json()["code"] == "order_id_conflict"


async def test_totals_barcode_lines_and_discounts(harness: Any) -> None:
    merchant, store = uuid.uuid4(), uuid.uuid4()
    tea = await harness.seed_product(merchant, price=1200, barcode="4006381333931", name="Tea")
    cake = await harness.seed_product(merchant, price=850, name="Cake")
    response = await harness.place(
        merchant,
        store,
        [
            {
                "barcode": "4006381333931",
                "quantity": 2,
                "discount": {"amount": 200, "currency": "CNY"},
            },
            {
                "product_id": str(cake),
                "quantity": 1,
                "unit_price": {"amount": 700, "currency": "CNY"},
            },
        ],
        member_id=str(await harness.seed_member(merchant)),
        table="A3",
        people_count=2,
    )
    assert response.status_code == 201, response.text
    order = response.json()
    assert order["status"] == "placed"
    assert order["subtotal"]["amount"] == 2 * 1200 + 700
    assert order["discount_total"]["amount"] == 200
    assert order["total"]["amount"] == 2 * 1200 + 700 - 200
    assert [line["product_id"] for line in order["lines"]] == [str(tea), str(cake)]
    assert order["lines"][1]["price_overridden"] is True
    placed = await harness.wait_events("orders.order.placed", merchant, 1)
    assert placed[0].payload["total"] == order["total"]
    assert placed[0].payload["table"] == "A3"


async def test_price_override_or_discount_needs_the_discount_permission(harness: Any) -> None:
    merchant, store = uuid.uuid4(), uuid.uuid4()
    product_id = await harness.seed_product(merchant)
    for adjustment in (
        {"unit_price": {"amount": 1, "currency": "CNY"}},
        {"discount": {"amount": 1, "currency": "CNY"}},
    ):
        response = await harness.place(
            merchant,
            store,
            [{"product_id": str(product_id), "quantity": 1, **adjustment}],
            scopes=frozenset({"orders:write"}),
        )
        assert response.status_code == 403
        assert response.json()["missing_permission"] == "orders:discount"


async def test_float_quantity_and_amount_are_refused(harness: Any) -> None:
    merchant, store = uuid.uuid4(), uuid.uuid4()
    product_id = await harness.seed_product(merchant)
    response = await harness.place(
        merchant,
        store,
        [
            {"product_id": str(product_id), "quantity": 1.5},
            {
                "product_id": str(product_id),
                "quantity": 1,
                "discount": {"amount": 0.5, "currency": "CNY"},
            },
        ],
    )
    assert response.status_code == 422
    errors = {e["field"]: e["code"] for e in response.json()["errors"]}
    assert errors == {
        "lines[0].quantity": "expected_integer",
        "lines[1].discount.amount": "expected_integer",
    }


async def test_unknown_product_names_the_line(harness: Any) -> None:
    merchant, store = uuid.uuid4(), uuid.uuid4()
    product_id = await harness.seed_product(merchant)
    response = await harness.place(
        merchant,
        store,
        [
            {"product_id": str(product_id), "quantity": 1},
            {"product_id": str(uuid.uuid4()), "quantity": 1},
            {"barcode": "73513537", "quantity": 1},
        ],
    )
    assert response.status_code == 422
    assert [(e["field"], e["code"]) for e in response.json()["errors"]] == [
        ("lines[1].product_id", "unknown_product"),
        ("lines[2].barcode", "unknown_product"),
    ]


async def test_paid_when_two_tenders_cover_the_total(harness: Any) -> None:
    merchant, store = uuid.uuid4(), uuid.uuid4()
    product_id = await harness.seed_product(merchant, price=1000)
    order = (
        await harness.place(merchant, store, [{"product_id": str(product_id), "quantity": 3}])
    ).json()
    first = await harness.pay(merchant, store, order["id"], 1000, method="cash")
    await harness.publish(first)  # delivered twice: counted once

    async def one_tender() -> bool:
        return len((await harness.order(merchant, order["id"]))["tenders"]) == 1

    await eventually(one_tender)
    assert (await harness.order(merchant, order["id"]))["status"] == "placed"
    await harness.pay(merchant, store, order["id"], 2000, method="wechat_pay")
    paid = await harness.wait_status(merchant, order["id"], "paid")
    assert paid["paid_total"]["amount"] == 3000
    assert sorted(t["method"] for t in paid["tenders"]) == ["cash", "wechat_pay"]
    events = await harness.wait_events("orders.order.paid", merchant, 1)
    assert events[0].payload["total"]["amount"] == 3000
    assert len(events[0].payload["tenders"]) == 2
    assert events[0].payload["lines"][0]["quantity"] == 3
    assert events[0].causation_id is not None


async def test_refunds_partially_then_fully(harness: Any) -> None:
    merchant, store = uuid.uuid4(), uuid.uuid4()
    product_id = await harness.seed_product(merchant, price=500)
    order = (
        await harness.place(merchant, store, [{"product_id": str(product_id), "quantity": 4}])
    ).json()
    payment = await harness.pay(merchant, store, order["id"], 2000)
    await harness.wait_status(merchant, order["id"], "paid")
    payment_id = uuid.UUID(payment.payload["payment_id"])
    first = await harness.refund(merchant, store, order["id"], payment_id, 500, [(product_id, 1)])
    await harness.publish(first)
    partial = await harness.wait_status(merchant, order["id"], "partially_refunded")
    assert partial["refunded_total"]["amount"] == 500
    await harness.refund(merchant, store, order["id"], payment_id, 1500, [(product_id, 3)])
    done = await harness.wait_status(merchant, order["id"], "refunded")
    assert [r["amount"]["amount"] for r in done["refunds"]] == [500, 1500]
    events = await harness.wait_events("orders.order.refunded", merchant, 2)
    assert [e.payload["fully_refunded"] for e in events] == [False, True]
    assert [e.payload["refunded_total"]["amount"] for e in events] == [500, 2000]
    assert events[0].payload["returned_lines"] == [{"product_id": str(product_id), "quantity": 1}]


async def test_illegal_transitions_answer_409(harness: Any) -> None:
    merchant, store = uuid.uuid4(), uuid.uuid4()
    product_id = await harness.seed_product(merchant)
    lines = [{"product_id": str(product_id), "quantity": 1}]
    placed = (await harness.place(merchant, store, lines)).json()
    early = await harness.client.post(
        f"/v1/orders/{placed['id']}/complete", headers=harness.auth(merchant)
    )
    assert early.status_code == 409
    assert early.json()["code"] == "illegal_transition"
    cancelled = await harness.client.post(
        f"/v1/orders/{placed['id']}/cancel",
        json={"reason": "changed mind"},
        headers=harness.auth(merchant),
    )
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    again = await harness.client.post(
        f"/v1/orders/{placed['id']}/cancel", headers=harness.auth(merchant)
    )
    assert again.status_code == 409
    assert (await harness.wait_events("orders.order.cancelled", merchant, 1))[0].payload[
        "reason"
    ] == "changed mind"

    paid = (await harness.place(merchant, store, lines)).json()
    await harness.pay(merchant, store, paid["id"], 1000)
    await harness.wait_status(merchant, paid["id"], "paid")
    refused = await harness.client.post(
        f"/v1/orders/{paid['id']}/cancel", headers=harness.auth(merchant)
    )
    assert refused.status_code == 409
    assert refused.json()["code"] == "order_has_payments"
    completed = await harness.client.post(
        f"/v1/orders/{paid['id']}/complete", headers=harness.auth(merchant)
    )
    assert completed.json()["status"] == "completed"


async def test_read_only_store_refuses_new_orders(harness: Any) -> None:
    merchant, store = uuid.uuid4(), uuid.uuid4()
    product_id = await harness.seed_product(merchant)
    lines = [{"product_id": str(product_id), "quantity": 1}]
    before = (await harness.place(merchant, store, lines)).json()
    await harness.set_store_status(merchant, store, "read_only", 2)

    async def locked() -> bool:
        return (await harness.place(merchant, store, lines)).status_code == 423

    await eventually(locked)
    refused = await harness.place(merchant, store, lines)
    assert refused.json()["code"] == "store_read_only"
    cancel = await harness.client.post(
        f"/v1/orders/{before['id']}/cancel", headers=harness.auth(merchant)
    )
    assert cancel.status_code == 423
    # A stale "active" (older version) does not unlock; a newer one does.
    await harness.set_store_status(merchant, store, "active", 1)
    await asyncio.sleep(0.3)
    assert (await harness.place(merchant, store, lines)).status_code == 423
    await harness.set_store_status(merchant, store, "active", 3)

    async def unlocked() -> bool:
        return (await harness.place(merchant, store, lines)).status_code == 201

    await eventually(unlocked)


async def test_kitchen_tickets_one_per_station(harness: Any) -> None:
    merchant, store = uuid.uuid4(), uuid.uuid4()
    noodles = await harness.seed_product(merchant, kitchen_station="hot", name="Noodles")
    dumplings = await harness.seed_product(merchant, kitchen_station="hot", name="Dumplings")
    tea = await harness.seed_product(merchant, kitchen_station="bar", name="Tea")
    water = await harness.seed_product(merchant, name="Water")
    response = await harness.place(
        merchant,
        store,
        [
            {"product_id": str(noodles), "quantity": 2, "modifiers": ["spicy"]},
            {"product_id": str(tea), "quantity": 1},
            {"product_id": str(dumplings), "quantity": 1, "notes": "well done"},
            {"product_id": str(water), "quantity": 1},
        ],
        channel="qr_table",
        table="T7",
    )
    assert response.status_code == 201, response.text
    tickets = await harness.wait_events("orders.kitchen_ticket.created", merchant, 2)
    await asyncio.sleep(0.2)
    tickets = harness.events("orders.kitchen_ticket.created", merchant)
    by_station = {t.payload["station"]: t.payload for t in tickets}
    assert set(by_station) == {"hot", "bar"}
    assert [(line["name"], line["quantity"]) for line in by_station["hot"]["lines"]] == [
        ("Noodles", 2),
        ("Dumplings", 1),
    ]
    assert by_station["hot"]["lines"][0]["modifiers"] == ["spicy"]
    assert by_station["hot"]["table"] == "T7"
    delivery = await harness.place(
        merchant, store, [{"product_id": str(tea), "quantity": 1}], channel="delivery"
    )
    assert delivery.status_code == 201
    await asyncio.sleep(0.3)
    assert len(harness.events("orders.kitchen_ticket.created", merchant)) == 2


async def test_other_merchants_order_is_not_found(harness: Any) -> None:
    owner, intruder, store = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    product_id = await harness.seed_product(owner)
    order = (
        await harness.place(owner, store, [{"product_id": str(product_id), "quantity": 1}])
    ).json()
    got = await harness.client.get(f"/v1/orders/{order['id']}", headers=harness.auth(intruder))
    assert got.status_code == 404
    cancel = await harness.client.post(
        f"/v1/orders/{order['id']}/cancel", headers=harness.auth(intruder)
    )
    assert cancel.status_code == 404
    other_store = await harness.client.get(
        f"/v1/orders/{order['id']}",
        headers=harness.auth(owner, store_ids=frozenset({uuid.uuid4()})),
    )
    assert other_store.status_code == 404
    # The intruder's catalog does not hold the owner's product either.
    placed = await harness.place(intruder, store, [{"product_id": str(product_id), "quantity": 1}])
    assert placed.status_code == 422


async def test_list_filters_by_store_and_status(harness: Any) -> None:
    merchant, store, other_store = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    product_id = await harness.seed_product(merchant)
    lines = [{"product_id": str(product_id), "quantity": 1}]
    a = (await harness.place(merchant, store, lines)).json()
    b = (await harness.place(merchant, store, lines)).json()
    await harness.place(merchant, other_store, lines)
    await harness.client.post(f"/v1/orders/{a['id']}/cancel", headers=harness.auth(merchant))
    placed = await harness.client.get(
        "/v1/orders",
        params={"store_id": str(store), "status": "placed"},
        headers=harness.auth(merchant),
    )
    assert [o["id"] for o in placed.json()["items"]] == [b["id"]]
    page = await harness.client.get(
        "/v1/orders", params={"limit": 2}, headers=harness.auth(merchant)
    )
    rest = await harness.client.get(
        "/v1/orders",
        params={"limit": 2, "cursor": page.json()["next_cursor"]},
        headers=harness.auth(merchant),
    )
    assert len(page.json()["items"]) == 2
    assert len(rest.json()["items"]) == 1
