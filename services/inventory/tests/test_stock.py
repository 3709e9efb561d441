"""The stock ledger: stock-in, adjustments, counts, sales and refunds from orders' events,
concurrency, negative stock and low-stock alerts."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from contracts.events.orders import OrderLine, OrderPaid, OrderRefunded, ReturnedLine
from contracts.money import Money
from inventory.stock.handlers import deduct_sold_goods, restock_returned_goods
from servicekit.auth import Role
from servicekit.testing.tokens import bearer_headers
from servicekit.testing.wait import eventually

from .conftest import KEY

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
CNY = Money.of(0, "CNY")


def paid(
    store_id: uuid.UUID,
    lines: list[tuple[str, int]],
    occurred_at: datetime = T0,
    order_id: uuid.UUID | None = None,
) -> OrderPaid:
    order_lines = [
        OrderLine(
            line_id=uuid.uuid4(),
            product_id=uuid.UUID(product_id),
            name="item",
            quantity=quantity,
            unit_price=Money.of(100, "CNY"),
            discount=CNY,
            total=Money.of(100 * quantity, "CNY"),
        )
        for product_id, quantity in lines
    ]
    total = Money.total((line.total for line in order_lines), "CNY")
    return OrderPaid(
        order_id=order_id or uuid.uuid4(),
        store_id=store_id,
        channel="pos",
        lines=order_lines,
        subtotal=total,
        discount_total=CNY,
        total=total,
        tenders=[],
        occurred_at=occurred_at,
        paid_at=occurred_at,
    )


async def stock_in(
    harness: Any,
    merchant: uuid.UUID,
    store: uuid.UUID,
    product_id: str,
    quantity: int,
    at: datetime = T0,
) -> None:
    response = await harness.client.post(
        f"/v1/stores/{store}/stock-in",
        json={
            "occurred_at": at.isoformat(),
            "lines": [{"product_id": product_id, "quantity": quantity}],
        },
        headers={**harness.auth(merchant), "Idempotency-Key": uuid.uuid4().hex},
    )
    assert response.status_code == 201, response.text


async def apply_sale(harness: Any, merchant: uuid.UUID, payload: OrderPaid) -> None:
    envelope = harness.envelope(payload, merchant, payload.order_id)
    async with harness.database.transaction() as session:
        await deduct_sold_goods(session, envelope)


async def test_stock_in_replays_with_the_same_idempotency_key(harness: Any) -> None:
    merchant = uuid.uuid4()
    store = await harness.store(merchant)
    product = await harness.product(merchant)
    body = {
        "document": "DN-1",
        "occurred_at": T0.isoformat(),
        "lines": [{"product_id": product["id"], "quantity": 10}],
    }
    headers = {**harness.auth(merchant), "Idempotency-Key": "receive-dn-1"}
    first = await harness.client.post(f"/v1/stores/{store}/stock-in", json=body, headers=headers)
    again = await harness.client.post(f"/v1/stores/{store}/stock-in", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert first.json()["movements"][0]["reference"] == "DN-1"
    assert await harness.on_hand(merchant, store, product["id"]) == 10
    reused = await harness.client.post(
        f"/v1/stores/{store}/stock-in", json={**body, "document": "DN-2"}, headers=headers
    )
    assert reused.status_code == 422
    assert reused.json()["code"] == "idempotency_key_reused"
    missing = await harness.client.post(
        f"/v1/stores/{store}/stock-in", json=body, headers=harness.auth(merchant)
    )
    assert missing.status_code == 400
    assert missing.json()["code"] == "idempotency_key_required"


async def test_a_cashier_of_another_store_cannot_replay_the_hq_stock_in(harness: Any) -> None:
    """The HQ admin receives goods into S2; a cashier of S1 resends it with the same key and
    gets what a fresh request would get, not S2's movements."""
    merchant = uuid.uuid4()
    s1, s2 = await harness.store(merchant), await harness.store(merchant)
    product = await harness.product(merchant)
    body = {"occurred_at": T0.isoformat(), "lines": [{"product_id": product["id"], "quantity": 4}]}
    key = {"Idempotency-Key": f"dn-{uuid.uuid4().hex}"}
    hq = await harness.client.post(
        f"/v1/stores/{s2}/stock-in", json=body, headers={**harness.auth(merchant), **key}
    )
    assert hq.status_code == 201
    cashier = bearer_headers(
        KEY,
        merchant,
        scopes=frozenset({"inventory:adjust"}),
        store_ids=frozenset({s1}),
        role=Role.CASHIER,
    )
    replayed = await harness.client.post(
        f"/v1/stores/{s2}/stock-in", json=body, headers={**cashier, **key}
    )
    assert replayed.status_code == 404
    assert "idempotent-replayed" not in replayed.headers
    # The same HQ admin, whose new token lost the store, is refused too.
    narrowed = harness.auth(merchant, store_ids=frozenset({s1}))
    again = await harness.client.post(
        f"/v1/stores/{s2}/stock-in", json=body, headers={**narrowed, **key}
    )
    assert again.status_code == 404
    assert await harness.on_hand(merchant, s2, product["id"]) == 4


async def test_stock_in_of_an_unknown_product_names_the_line(harness: Any) -> None:
    merchant = uuid.uuid4()
    store = await harness.store(merchant)
    product = await harness.product(merchant)
    response = await harness.client.post(
        f"/v1/stores/{store}/stock-in",
        json={
            "occurred_at": T0.isoformat(),
            "lines": [
                {"product_id": product["id"], "quantity": 1},
                {"product_id": str(uuid.uuid4()), "quantity": 1},
            ],
        },
        headers={**harness.auth(merchant), "Idempotency-Key": uuid.uuid4().hex},
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "lines[1].product_id"


async def test_concurrent_sales_keep_on_hand_exact(harness: Any) -> None:
    merchant = uuid.uuid4()
    store = await harness.store(merchant)
    product = await harness.product(merchant)
    other = await harness.product(merchant)
    await stock_in(harness, merchant, store, product["id"], 100)
    sales = [
        paid(store, [(product["id"], 1 + i % 3), (other["id"], 1)], T0 + timedelta(minutes=i))
        for i in range(20)
    ]
    await asyncio.gather(*(apply_sale(harness, merchant, sale) for sale in sales))
    sold = sum(1 + i % 3 for i in range(20))
    assert await harness.on_hand(merchant, store, product["id"]) == 100 - sold
    assert await harness.on_hand(merchant, store, other["id"]) == -20


async def test_sale_is_never_refused_and_negative_stock_is_flagged(harness: Any) -> None:
    merchant = uuid.uuid4()
    store = await harness.store(merchant)
    product = await harness.product(merchant)
    await stock_in(harness, merchant, store, product["id"], 2)
    await apply_sale(harness, merchant, paid(store, [(product["id"], 5)]))
    level = await harness.client.get(
        f"/v1/stores/{store}/stock/{product['id']}", headers=harness.auth(merchant)
    )
    assert level.json()["on_hand"] == -3
    assert level.json()["negative"] is True
    negatives = await harness.client.get(
        f"/v1/stores/{store}/stock", params={"negative": "true"}, headers=harness.auth(merchant)
    )
    assert [item["product_id"] for item in negatives.json()["items"]] == [product["id"]]


async def test_low_stock_is_announced_once_per_crossing(harness: Any) -> None:
    merchant = uuid.uuid4()
    store = await harness.store(merchant)
    product = await harness.product(merchant)
    pid = product["id"]
    threshold = await harness.client.put(
        f"/v1/stores/{store}/stock/{pid}/threshold",
        json={"threshold": 5},
        headers=harness.auth(merchant),
    )
    assert threshold.status_code == 200, threshold.text
    await stock_in(harness, merchant, store, pid, 10)  # 10: first alert went out at 0 on setting
    await apply_sale(harness, merchant, paid(store, [(pid, 3)]))  # 7
    await apply_sale(harness, merchant, paid(store, [(pid, 3)]))  # 4: crossing
    await apply_sale(harness, merchant, paid(store, [(pid, 1)]))  # 3: still below, no alert
    await stock_in(harness, merchant, store, pid, 10)  # 13: re-armed
    await apply_sale(harness, merchant, paid(store, [(pid, 10)]))  # 3: crossing again
    await harness.wait_events("inventory.stock.low", merchant, 3)
    # The outbox holds every alert ever written (the whole envelope), published or not.
    async with harness.database.transaction() as session:
        from sqlalchemy import text

        payloads = (
            await session.scalars(
                text(
                    "SELECT payload FROM outbox WHERE type = 'inventory.stock.low'"
                    " AND aggregateid = :aggregate ORDER BY seq"
                ),
                {"aggregate": f"{store}:{pid}"},
            )
        ).all()
    assert [p["payload"]["on_hand"] for p in payloads] == [0, 4, 3]
    assert all(p["payload"]["threshold"] == 5 for p in payloads)


async def test_count_absorbs_a_late_sale_dated_before_it(harness: Any) -> None:
    merchant = uuid.uuid4()
    store = await harness.store(merchant)
    product = await harness.product(merchant)
    pid = product["id"]
    await stock_in(harness, merchant, store, pid, 10, T0)
    # Received after the count's moment but recorded before the count arrives: applies on top.
    await stock_in(harness, merchant, store, pid, 5, T0 + timedelta(hours=3))
    count = await harness.client.post(
        f"/v1/stores/{store}/counts",
        json={
            "occurred_at": (T0 + timedelta(hours=2)).isoformat(),
            "lines": [{"product_id": pid, "counted": 8}],
        },
        headers=harness.keyed(merchant),
    )
    assert count.status_code == 201, count.text
    assert await harness.on_hand(merchant, store, pid) == 13
    # An offline sale made before the count reaches the server late: the count already saw it.
    await apply_sale(harness, merchant, paid(store, [(pid, 3)], T0 + timedelta(hours=1)))
    assert await harness.on_hand(merchant, store, pid) == 13
    await apply_sale(harness, merchant, paid(store, [(pid, 2)], T0 + timedelta(hours=4)))
    assert await harness.on_hand(merchant, store, pid) == 11
    movements = await harness.client.get(
        f"/v1/stores/{store}/movements", params={"kind": "sale"}, headers=harness.auth(merchant)
    )
    absorbed = {m["quantity"]: m["absorbed"] for m in movements.json()["items"]}
    assert absorbed == {-3: True, -2: False}


async def test_adjustment_needs_its_scope_and_a_reason(harness: Any) -> None:
    merchant = uuid.uuid4()
    store = await harness.store(merchant)
    product = await harness.product(merchant)
    body = {
        "product_id": product["id"],
        "quantity": -2,
        "reason": "broken",
        "occurred_at": T0.isoformat(),
    }
    forbidden = await harness.client.post(
        f"/v1/stores/{store}/adjustments",
        json=body,
        headers=harness.keyed(merchant, scopes=frozenset({"catalog:manage"})),
    )
    assert forbidden.status_code == 403
    keyless = await harness.client.post(
        f"/v1/stores/{store}/adjustments", json=body, headers=harness.auth(merchant)
    )
    assert keyless.status_code == 400
    assert keyless.json()["code"] == "idempotency_key_required"
    key = {"Idempotency-Key": uuid.uuid4().hex}
    done = await harness.client.post(
        f"/v1/stores/{store}/adjustments", json=body, headers={**harness.auth(merchant), **key}
    )
    assert done.status_code == 201, done.text
    assert done.json()["on_hand_after"] == -2
    again = await harness.client.post(
        f"/v1/stores/{store}/adjustments", json=body, headers={**harness.auth(merchant), **key}
    )
    assert again.headers["idempotent-replayed"] == "true"
    assert await harness.on_hand(merchant, store, product["id"]) == -2
    unreasoned = await harness.client.post(
        f"/v1/stores/{store}/adjustments",
        json={**body, "reason": ""},
        headers=harness.keyed(merchant),
    )
    assert unreasoned.status_code == 422


async def test_sale_and_refund_through_the_bus_apply_once(harness: Any) -> None:
    merchant = uuid.uuid4()
    store = await harness.store(merchant)
    product = await harness.product(merchant)
    pid = product["id"]
    await stock_in(harness, merchant, store, pid, 10)
    sale = paid(store, [(pid, 2), (pid, 1)])
    envelope = harness.envelope(sale, merchant, sale.order_id)
    await harness.publish(envelope)
    await harness.publish(envelope)  # redelivered: the inbox drops it
    # Re-published with a new event id: the movement's source key drops it.
    await harness.publish(harness.envelope(sale, merchant, sale.order_id))
    await harness.wait_on_hand(merchant, store, pid, 7)

    refund = OrderRefunded(
        order_id=sale.order_id,
        store_id=store,
        refund_id=uuid.uuid4(),
        payment_id=uuid.uuid4(),
        amount=Money.of(100, "CNY"),
        refunded_total=Money.of(100, "CNY"),
        order_total=sale.total,
        returned_lines=[ReturnedLine(product_id=uuid.UUID(pid), quantity=1)],
        fully_refunded=False,
    )
    refund_envelope = harness.envelope(refund, merchant, sale.order_id)
    await harness.publish(refund_envelope)
    await harness.publish(refund_envelope)
    # Once a copy under a new id, published last on the same key, is in, all copies are.
    last = harness.envelope(refund, merchant, sale.order_id)
    await harness.publish(last)
    await settled(harness, last)
    assert await harness.on_hand(merchant, store, pid) == 8
    movements = await harness.client.get(
        f"/v1/stores/{store}/movements", params={"product_id": pid}, headers=harness.auth(merchant)
    )
    kinds = [(m["kind"], m["quantity"], m["reference"]) for m in movements.json()["items"]]
    assert kinds == [
        ("refund_return", 1, str(sale.order_id)),
        ("sale", -3, str(sale.order_id)),
        ("stock_in", 10, None),
    ]


async def test_direct_handler_replay_changes_nothing(harness: Any) -> None:
    merchant = uuid.uuid4()
    store = await harness.store(merchant)
    product = await harness.product(merchant)
    sale = paid(store, [(product["id"], 4)])
    await apply_sale(harness, merchant, sale)
    await apply_sale(harness, merchant, sale)
    refund = OrderRefunded(
        order_id=sale.order_id,
        store_id=store,
        refund_id=uuid.uuid4(),
        payment_id=uuid.uuid4(),
        amount=Money.of(400, "CNY"),
        refunded_total=Money.of(400, "CNY"),
        order_total=sale.total,
        returned_lines=[ReturnedLine(product_id=uuid.UUID(product["id"]), quantity=4)],
        fully_refunded=True,
    )
    for _ in range(2):
        async with harness.database.transaction() as session:
            await restock_returned_goods(session, harness.envelope(refund, merchant, sale.order_id))
    assert await harness.on_hand(merchant, store, product["id"]) == 0


async def test_other_merchants_stock_is_not_found(harness: Any) -> None:
    owner, intruder = uuid.uuid4(), uuid.uuid4()
    store = await harness.store(owner)
    product = await harness.product(owner)
    await stock_in(harness, owner, store, product["id"], 3)
    response = await harness.client.get(
        f"/v1/stores/{store}/stock/{product['id']}", headers=harness.auth(intruder)
    )
    assert response.status_code == 404
    moved = await harness.client.post(
        f"/v1/stores/{store}/stock-in",
        json={
            "occurred_at": T0.isoformat(),
            "lines": [{"product_id": product["id"], "quantity": 1}],
        },
        headers={**harness.auth(intruder), "Idempotency-Key": uuid.uuid4().hex},
    )
    assert moved.status_code == 404
    listed = await harness.client.get(
        f"/v1/stores/{store}/movements", headers=harness.auth(intruder)
    )
    assert listed.status_code == 404


async def test_store_outside_the_callers_stores_is_not_found(harness: Any) -> None:
    merchant, elsewhere = uuid.uuid4(), uuid.uuid4()
    store = await harness.store(merchant)
    product = await harness.product(merchant)
    response = await harness.client.get(
        f"/v1/stores/{store}/stock/{product['id']}",
        headers=harness.auth(merchant, store_ids=frozenset({elsewhere})),
    )
    assert response.status_code == 404


def refund_of(
    sale: OrderPaid, lines: list[tuple[str, int]], refund_id: uuid.UUID | None = None
) -> OrderRefunded:
    return OrderRefunded(
        order_id=sale.order_id,
        store_id=sale.store_id,
        refund_id=refund_id or uuid.uuid4(),
        payment_id=uuid.uuid4(),
        amount=Money.of(100, "CNY"),
        refunded_total=Money.of(100, "CNY"),
        order_total=sale.total,
        returned_lines=[ReturnedLine(product_id=uuid.UUID(p), quantity=q) for p, q in lines],
        fully_refunded=False,
    )


async def settled(harness: Any, envelope: Any) -> None:
    """Wait until the sales consumer took ``envelope`` in (inbox) or dead-lettered it, and
    insist it was the inbox."""
    from sqlalchemy import text

    async def seen() -> bool:
        async with harness.database.transaction() as session:
            found = await session.scalar(
                text("SELECT 1 FROM inbox WHERE event_id = :id"), {"id": envelope.event_id}
            )
        dead = [
            m
            for m in harness.bus.broker.messages("orders.order.dlq")
            if str(envelope.event_id).encode() in m.value
        ]
        assert not dead, dead
        return found is not None

    await eventually(seen)


async def test_refund_before_its_sale_and_replays_end_in_the_same_stock(harness: Any) -> None:
    merchant = uuid.uuid4()
    store = await harness.store(merchant)
    pid = (await harness.product(merchant))["id"]
    await stock_in(harness, merchant, store, pid, 10)
    sale = paid(store, [(pid, 3)])
    refund = refund_of(sale, [(pid, 1)])
    refund_envelope = harness.envelope(refund, merchant, sale.order_id)
    sale_envelope = harness.envelope(sale, merchant, sale.order_id)
    # The refund overtakes its sale, and both come again, one under a new event id.
    for envelope in (
        refund_envelope,
        sale_envelope,
        refund_envelope,
        harness.envelope(refund, merchant, sale.order_id),
        harness.envelope(sale, merchant, sale.order_id),
    ):
        await harness.publish(envelope)
    for envelope in (refund_envelope, sale_envelope):
        await settled(harness, envelope)
    last = harness.envelope(sale, merchant, sale.order_id)
    await harness.publish(last)
    await settled(harness, last)
    assert await harness.on_hand(merchant, store, pid) == 8


async def test_refund_of_a_huge_quantity_or_an_unknown_product_moves_nothing(
    harness: Any,
) -> None:
    merchant = uuid.uuid4()
    store = await harness.store(merchant)
    pid = (await harness.product(merchant))["id"]
    await stock_in(harness, merchant, store, pid, 10)
    sale = paid(store, [(pid, 1)])
    stranger = str(uuid.uuid4())
    huge = refund_of(sale, [(pid, 2**63), (stranger, 5)])
    summed = refund_of(sale, [(pid, 10**9), (pid, 10**9)])
    envelopes = [harness.envelope(r, merchant, sale.order_id) for r in (huge, summed)]
    for envelope in envelopes:
        await harness.publish(envelope)
    for envelope in envelopes:
        await settled(harness, envelope)
    assert await harness.on_hand(merchant, store, pid) == 10
    # No stock row was made up for a product the catalog never had.
    response = await harness.client.get(
        f"/v1/stores/{store}/stock/{stranger}", headers=harness.auth(merchant)
    )
    assert response.status_code == 404
    listed = await harness.client.get(f"/v1/stores/{store}/stock", headers=harness.auth(merchant))
    assert [item["product_id"] for item in listed.json()["items"]] == [pid]


async def test_events_of_one_merchant_never_touch_anothers_stock(harness: Any) -> None:
    owner, other = uuid.uuid4(), uuid.uuid4()
    store = await harness.store(owner)
    shared = str(uuid.uuid4())
    await harness.product(owner, id=shared)
    await harness.product(other, id=shared)
    await stock_in(harness, owner, store, shared, 10)
    # The other merchant's order names the owner's store and a product id both of them use.
    sale = paid(store, [(shared, 4)])
    envelope = harness.envelope(sale, other, sale.order_id)
    await harness.publish(envelope)
    await settled(harness, envelope)
    assert await harness.on_hand(owner, store, shared) == 10
    async with harness.database.transaction() as session:
        from sqlalchemy import text

        moved = await session.scalar(
            text("SELECT count(*) FROM stock_movements WHERE merchant_id = :m"), {"m": other}
        )
    assert moved == 0


async def test_a_sale_in_a_store_not_heard_of_yet_still_deducts(harness: Any) -> None:
    merchant, store = uuid.uuid4(), uuid.uuid4()
    pid = (await harness.product(merchant))["id"]
    sale = paid(store, [(pid, 2)])
    await apply_sale(harness, merchant, sale)
    await harness.store(merchant, store)
    assert await harness.on_hand(merchant, store, pid) == -2
