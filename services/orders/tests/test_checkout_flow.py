"""Checkout across services: inventory and orders, each on its own database, talking only
through the bus: a product created in inventory reaches orders' replica, an order is placed
and paid (payments' event written to the bus), and inventory takes the goods off the shelf.

Runs once on the in-memory bus and once on the real broker."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

import inventory
from contracts.events.identity import StoreCreated
from contracts.events.payments import PaymentSucceeded
from contracts.money import Money
from contracts.registry import make_envelope
from contracts.topics import topic_for_event_type
from inventory.config import Settings as InventorySettings
from inventory.main import create_app as create_inventory
from orders.main import create_app as create_orders
from orders.models import CatalogProduct, Store
from servicekit.bus.base import OutgoingMessage, PublisherTransport
from servicekit.bus.factory import Bus, InMemoryBus, KafkaBus
from servicekit.testing.plugin import CreateDatabase
from servicekit.testing.servers import Servers
from servicekit.testing.wait import eventually

INVENTORY_MIGRATIONS = Path(inventory.__file__).parent / "migrations"


@dataclass
class Stack:
    inventory: httpx.AsyncClient
    orders: httpx.AsyncClient
    orders_app: Any
    publisher: PublisherTransport


@contextlib.asynccontextmanager
async def running_stack(
    bus: Bus, create_database: CreateDatabase, kit: Any, **overrides: Any
) -> AsyncIterator[Stack]:
    # Databases of their own: another app's relay on the same outbox would publish elsewhere.
    inventory_url = await create_database("inventory_flow", migrations=INVENTORY_MIGRATIONS)
    orders_url = await create_database("orders_flow", migrations=kit.migrations)
    inventory_app = create_inventory(
        InventorySettings(
            database_url=inventory_url,
            log_format="console",
            outbox_poll_interval=0.1,
            consumer_retry_backoff=0.01,
            **overrides,
        ),
        bus=bus,
        token_verifier=kit.verifier(),
    )
    orders_app = create_orders(
        kit.settings_for(orders_url, **overrides), bus=bus, token_verifier=kit.verifier()
    )
    publisher = bus.publisher("payments-test")
    await publisher.start()
    async with (
        inventory_app.router.lifespan_context(inventory_app),
        orders_app.router.lifespan_context(orders_app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=inventory_app), base_url="http://inventory"
        ) as inventory_client,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=orders_app), base_url="http://orders"
        ) as orders_client,
    ):
        try:
            yield Stack(inventory_client, orders_client, orders_app, publisher)
        finally:
            await publisher.stop()


async def announce_store(stack: Stack, merchant: uuid.UUID, store: uuid.UUID) -> None:
    """Identity's ``identity.store.created``: inventory takes stock only for stores it knows."""
    created = StoreCreated(
        store_id=store,
        merchant_id=merchant,
        code="S1",
        name="Store",
        address="1 Main St",
        timezone="Asia/Shanghai",
        business_hours=[],
        region_id=None,
        status="active",
        version=1,
    )
    event = make_envelope(created, producer="identity", aggregate_id=store, merchant_id=merchant)
    await stack.publisher.publish(
        [
            OutgoingMessage(
                topic=topic_for_event_type(event.type),
                key=str(store).encode(),
                value=event.model_dump_json().encode(),
            )
        ]
    )


async def checkout(stack: Stack, kit: Any, timeout: float) -> None:
    merchant, store = uuid.uuid4(), uuid.uuid4()
    headers = kit.auth(merchant)
    await announce_store(stack, merchant, store)

    async def store_known() -> bool:
        response = await stack.inventory.get(f"/v1/stores/{store}/stock", headers=headers)
        return response.status_code == 200

    await eventually(store_known, timeout=timeout)
    created = await stack.inventory.post(
        "/v1/products",
        json={
            "sku": "NOODLE-1",
            "name": "Beef noodles",
            "price": {"amount": 2800, "currency": "CNY"},
            "kitchen_station": "hot",
        },
        headers=headers,
    )
    assert created.status_code == 201, created.text
    product_id = created.json()["id"]
    received = await stack.inventory.post(
        f"/v1/stores/{store}/stock-in",
        json={
            "occurred_at": "2026-03-01T08:00:00+00:00",
            "lines": [{"product_id": product_id, "quantity": 10}],
        },
        headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
    )
    assert received.status_code == 201, received.text

    database = stack.orders_app.state.database

    async def replicated() -> bool:
        async with database.transaction() as session:
            found = await session.scalar(
                sa.select(CatalogProduct.name).where(
                    CatalogProduct.product_id == uuid.UUID(product_id)
                )
            )
        return found == "Beef noodles"

    await eventually(replicated, timeout=timeout)

    opened = kit.store_created(merchant, store)
    await stack.publisher.publish(
        [
            OutgoingMessage(
                topic=topic_for_event_type(opened.type),
                key=str(store).encode(),
                value=opened.model_dump_json().encode(),
            )
        ]
    )

    async def store_known() -> bool:
        async with database.transaction() as session:
            return await session.get(Store, (merchant, store)) is not None

    await eventually(store_known, timeout=timeout)

    placed = await stack.orders.post(
        "/v1/orders",
        json={
            "id": str(uuid.uuid4()),
            "channel": "pos",
            "store_id": str(store),
            "occurred_at": "2026-03-01T12:00:00+00:00",
            "lines": [{"product_id": product_id, "quantity": 3}],
        },
        headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
    )
    assert placed.status_code == 201, placed.text
    order = placed.json()
    assert order["total"] == {"amount": 8400, "currency": "CNY"}

    payment_id = uuid.uuid4()
    succeeded = PaymentSucceeded(
        payment_id=payment_id,
        order_id=uuid.UUID(order["id"]),
        store_id=store,
        method="wechat_pay",
        amount=Money.of(8400, "CNY"),
        fee=Money.of(32, "CNY"),
        net=Money.of(8368, "CNY"),
        fee_rate_bps=38,
        provider="wechat_pay",
    )
    event = make_envelope(
        succeeded,
        producer="payments",
        aggregate_id=payment_id,
        merchant_id=merchant,
        store_id=store,
    )
    await stack.publisher.publish(
        [
            OutgoingMessage(
                topic=topic_for_event_type(event.type),
                key=str(payment_id).encode(),
                value=event.model_dump_json().encode(),
            )
        ]
    )

    async def paid() -> bool:
        response = await stack.orders.get(f"/v1/orders/{order['id']}", headers=headers)
        return response.json()["status"] == "paid"

    await eventually(paid, timeout=timeout)

    async def deducted() -> bool:
        response = await stack.inventory.get(
            f"/v1/stores/{store}/stock/{product_id}", headers=headers
        )
        return response.json()["on_hand"] == 7

    await eventually(deducted, timeout=timeout)
    movements = await stack.inventory.get(
        f"/v1/stores/{store}/movements", params={"kind": "sale"}, headers=headers
    )
    assert [(m["quantity"], m["reference"]) for m in movements.json()["items"]] == [
        (-3, order["id"])
    ]


async def test_checkout_on_the_in_memory_bus(create_database: CreateDatabase, kit: Any) -> None:
    async with running_stack(InMemoryBus(), create_database, kit) as stack:
        await checkout(stack, kit, timeout=10.0)


@pytest.mark.timeout(120)
async def test_checkout_on_the_real_broker(
    create_database: CreateDatabase, servers: Servers, kit: Any
) -> None:
    bus = KafkaBus(
        servers.kafka_bootstrap_servers,
        session_timeout_ms=6_000,
        heartbeat_interval_ms=500,
        rebalance_timeout_ms=3_000,
    )
    async with running_stack(
        bus,
        create_database,
        kit,
        kafka_bootstrap_servers=servers.kafka_bootstrap_servers,
    ) as stack:
        await checkout(stack, kit, timeout=60.0)
