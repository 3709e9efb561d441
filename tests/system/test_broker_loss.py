"""The broker dies in the middle of a day at the till and comes back empty.

The services run on a Tansu broker of this module's own, which keeps its log in memory. At
midday inventory's and members' consumers are down (a deploy in progress) while three orders
are paid: orders marks ``orders.order.paid`` sent, but nobody has read it yet. Then the
broker is killed with SIGKILL and started again on the same port: no topics, no log, no
consumer groups. The consumers come back, two more orders are taken, and without anyone
stepping in every event any outbox marked sent must reach every consumer group subscribed to
it (checked against the inboxes), once in effect: the stock, the points and the orders come
out exactly right.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio
import sqlalchemy as sa

from orders.models import CatalogProduct
from orders.models import Store as OrdersStore
from servicekit.embedded.kafka import EmbeddedKafka
from servicekit.embedded.ports import free_port
from servicekit.testing.plugin import CreateDatabase
from servicekit.testing.servers import Servers

from .conftest import System, running_system, wait_for
from .test_day_at_the_till import PRODUCTS, RECEIVED, Till, at, cny, points_awarded

pytestmark = pytest.mark.timeout(180)


class KillableBroker:
    def __init__(self) -> None:
        self.port = free_port()
        self.server = EmbeddedKafka(port=self.port)

    @property
    def bootstrap(self) -> str:
        return self.server.bootstrap_servers

    def start(self) -> None:
        self.server = EmbeddedKafka(port=self.port)
        self.server.start()

    def kill(self) -> None:
        pid = self.server.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        self.server.stop()


@pytest.fixture(scope="module")
def broker() -> Iterator[KillableBroker]:
    b = KillableBroker()
    b.start()
    yield b
    b.server.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def system(
    create_database: CreateDatabase, servers: Servers, broker: KillableBroker
) -> AsyncIterator[System]:
    own = Servers(servers.postgres_url, broker.bootstrap, servers.mqtt_url)
    async with running_system(create_database, own) as running:
        yield running


async def inbox_gaps(system: System) -> dict[str, int]:
    """Per consumer group, how many events some outbox marked sent that the group subscribes
    to (it has a handler for the type) are missing from its inbox."""
    sent: list[tuple[uuid.UUID, str, str]] = []
    for service in system.services:
        async with service.database.transaction() as session:
            rows = await session.execute(
                sa.text("SELECT id, topic, type FROM outbox WHERE sent_at IS NOT NULL")
            )
            sent += [(r.id, r.topic, r.type) for r in rows]
    gaps: dict[str, int] = {}
    for service, consumer in system.consumer_groups():
        wanted = {
            event_id
            for event_id, topic, event_type in sent
            if topic in consumer.handlers.topics and consumer.handlers.get(event_type)
        }
        async with service.database.transaction() as session:
            applied = {
                r[0]
                for r in await session.execute(
                    sa.text("SELECT event_id FROM inbox WHERE consumer = :c"), {"c": consumer.name}
                )
            }
        gaps[consumer.name] = len(wanted - applied)
    return gaps


async def test_the_broker_loses_its_log_at_midday(system: System, broker: KillableBroker) -> None:
    merchant = await system.onboard()
    till = Till(system, merchant)
    hq, manager, cashier = merchant.hq, merchant.manager, merchant.cashier
    store = merchant.store_id

    async def store_known() -> bool:
        status = await system.orders.scalar(
            sa.select(OrdersStore.status).where(OrdersStore.store_id == uuid.UUID(store))
        )
        return bool(status == "active")

    await wait_for(store_known, "orders learns identity's store")
    for name, spec in PRODUCTS.items():
        body: dict[str, Any] = {
            "sku": spec["sku"],
            "name": spec["name"],
            "price": cny(spec["price"]),
        }
        if "barcode" in spec:
            body["barcode"] = spec["barcode"]
        response = await system.inventory.client.post(
            "/v1/products", json=body, headers=till.idempotent(hq, f"product-{name}")
        )
        assert response.status_code == 201, response.text
        till.products[name] = response.json()["id"]
    received = await system.inventory.client.post(
        f"/v1/stores/{store}/stock-in",
        json={
            "document": "GRN-1",
            "occurred_at": at(8, 30),
            "lines": [{"product_id": till.products[n], "quantity": q} for n, q in RECEIVED.items()],
        },
        headers=till.idempotent(manager, "grn-1"),
    )
    assert received.status_code == 201, received.text

    async def catalog_replicated() -> bool:
        rows = await system.orders.scalar(
            sa.select(sa.func.count())
            .select_from(CatalogProduct)
            .where(CatalogProduct.merchant_id == uuid.UUID(merchant.id))
        )
        return bool(rows == len(PRODUCTS))

    await wait_for(catalog_replicated, "the catalog reaches orders")
    registered = await system.members.client.post(
        "/v1/members",
        json={"phone": "+86 138-0013-8001", "name": "Li Lei"},
        headers=cashier.headers,
    )
    assert registered.status_code == 201, registered.text
    member_id = registered.json()["id"]
    await till.wait_member_known(member_id)
    rule = (await system.members.client.get("/v1/points-rule", headers=hq.headers)).json()

    sold: Counter[str] = Counter()
    points = 0

    async def sell(hour: int, basket: dict[str, int]) -> str:
        nonlocal points
        order_id = str(uuid.uuid4())
        lines = [{"product_id": till.products[n], "quantity": q} for n, q in basket.items()]
        order = await till.place(order_id, lines, when=at(hour), member_id=member_id)
        total = order["total"]["amount"]
        assert total == sum(PRODUCTS[n]["price"] * q for n, q in basket.items())
        paid = await till.pay(
            order_id, f"pay-{order_id}", method="cash", amount=cny(total), tendered=cny(total)
        )
        assert paid["status"] == "succeeded"
        sold.update(basket)
        points += points_awarded(total, rule)
        return order_id

    def expected_stock() -> dict[str, int]:
        return {n: RECEIVED[n] - sold[n] for n in RECEIVED}

    # --- morning: everything flows ------------------------------------------------------------
    morning = [await sell(9, {"noodles": 1, "tea": 2}), await sell(10, {"dumplings": 2})]
    for order_id in morning:
        await till.wait_order(order_id, "paid", (await till.order(order_id))["total"]["amount"])
    await till.wait_on_hand(expected_stock(), "the morning leaves the shelf")
    await till.wait_points(member_id, points)

    # --- midday: inventory and members are down; orders marks their events sent --------------
    await system.inventory.stop_consumer("sales")
    await system.members.stop_consumer("points")
    midday = [
        await sell(12, {"noodles": 2}),
        await sell(12, {"cola": 3, "tea": 1}),
        await sell(13, {"dumplings": 1, "noodles": 1}),
    ]
    for order_id in midday:
        await till.wait_order(order_id, "paid", (await till.order(order_id))["total"]["amount"])
    await wait_for(system.drained, "every outbox marked its events sent")

    # --- the broker dies and comes back empty -------------------------------------------------
    broker.kill()
    broker.start()
    await system.inventory.restart_consumer("sales")
    await system.members.restart_consumer("points")

    # --- afternoon: the till keeps selling ----------------------------------------------------
    afternoon = [await sell(15, {"tea": 1}), await sell(16, {"cola": 1, "noodles": 1})]
    for order_id in afternoon:
        await till.wait_order(order_id, "paid", (await till.order(order_id))["total"]["amount"])

    # Nothing sent is lost, nothing is applied twice: within 60 s, with no one stepping in.
    await till.wait_on_hand(expected_stock(), "every sale leaves the shelf exactly once")
    await till.wait_points(member_id, points)

    async def no_gaps() -> bool:
        return await system.drained() and not any((await inbox_gaps(system)).values())

    await wait_for(no_gaps, "every sent event is in every subscribed consumer's inbox", 60)
    assert await till.on_hand() == expected_stock()
    assert (await till.points(member_id))["balance"] == points
    for order_id in morning + midday + afternoon:
        assert (await till.order(order_id))["status"] == "paid"

    async def ready() -> bool:
        for service in system.services:
            if (await service.client.get("/readyz")).status_code != 200:
                return False
        return True

    await wait_for(ready, "every service ready again, no consumer group stuck")
