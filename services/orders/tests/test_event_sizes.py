"""The largest order the API accepts produces events well under the broker's 1 MiB limit, so
one order can never block the outbox relay for every tenant."""

from __future__ import annotations

import uuid
from typing import Any

from contracts.events.inventory import ProductCreated
from contracts.money import Money
from contracts.topics import topic_for_event_type
from orders.order.schemas import (
    MAX_LINES,
    MAX_MODIFIER_LENGTH,
    MAX_MODIFIERS,
    MAX_NOTES_LENGTH,
    MAX_QUANTITY,
    MAX_TABLE_LENGTH,
)
from orders.order.service import MAX_ORDER_AMOUNT

BROKER_LIMIT = 1024 * 1024
#: Room left for headers, batch framing and schema growth.
BUDGET = BROKER_LIMIT * 3 // 4
# The costliest characters to serialise: a control character is escaped to six bytes (the
# catalog may hold them; order text refuses them), a character outside the BMP takes four.
ESCAPED = "\x01"
WIDE = "\U0001f35c"  # 🍜
CATALOG_NAME_LENGTH = 200  # inventory's bound on a product name
STATION_LENGTH = 64  # inventory's bound on a kitchen station


async def test_largest_valid_order_events_fit_the_broker(harness: Any) -> None:
    merchant = uuid.uuid4()
    store = await harness.seed_store(merchant)
    member = await harness.seed_member(merchant)
    products = []
    # Every line on one station, so one kitchen ticket carries all of them.
    station = ESCAPED * STATION_LENGTH
    for i in range(MAX_LINES):
        product_id = uuid.uuid4()
        created = ProductCreated(
            product_id=product_id,
            version=1,
            sku=f"SKU-{i}",
            barcode=None,
            name=ESCAPED * CATALOG_NAME_LENGTH,
            unit="each",
            price=Money.of(2**40, "CNY"),
            tax_rate_bps=600,
            status="active",
            kitchen_station=station,
        )
        event = harness.envelope(created, merchant, product_id, "inventory")
        await harness.publish(event)
        products.append((product_id, event))
    for _, event in products:
        await harness.applied(event)
    # The longest amounts the bounds allow: every line at its share of the order's maximum.
    unit_price = MAX_ORDER_AMOUNT // (MAX_LINES * MAX_QUANTITY)
    lines = [
        {
            "product_id": str(product_id),
            "quantity": MAX_QUANTITY,
            "notes": WIDE * MAX_NOTES_LENGTH,
            "modifiers": [WIDE * MAX_MODIFIER_LENGTH] * MAX_MODIFIERS,
            "discount": {"amount": unit_price * MAX_QUANTITY - 1, "currency": "CNY"},
            "unit_price": {"amount": unit_price, "currency": "CNY"},
        }
        for product_id, _ in products
    ]
    response = await harness.place(
        merchant,
        store,
        lines,
        channel="pos",
        table=WIDE * MAX_TABLE_LENGTH,
        people_count=1000,
        member_id=str(member),
    )
    assert response.status_code == 201, response.text[:500]
    order = response.json()
    await harness.publish_applied(
        await harness.pay(merchant, store, order["id"], order["total"]["amount"])
    )
    await harness.wait_events("orders.order.paid", merchant, 1)
    await harness.wait_events("orders.kitchen_ticket.created", merchant, 1)
    sizes: dict[str, int] = {}
    for event_type in ("orders.order.placed", "orders.order.paid", "orders.kitchen_ticket.created"):
        for message in harness.bus.broker.messages(topic_for_event_type(event_type)):
            if str(merchant).encode() in message.value and event_type.encode() in message.value:
                sizes[event_type] = max(sizes.get(event_type, 0), len(message.value))
    assert set(sizes) == {
        "orders.order.placed",
        "orders.order.paid",
        "orders.kitchen_ticket.created",
    }
    # The test really built the largest order: its placed event is big.
    assert sizes["orders.order.placed"] > BROKER_LIMIT // 4, sizes
    assert all(size < BUDGET for size in sizes.values()), sizes
