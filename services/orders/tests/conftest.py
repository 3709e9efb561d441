"""Fixtures of the orders tests: a migrated database and a running orders app on an in-memory
bus for the whole run; events from inventory, identity and payments are written to that bus
as those services would. Each test works for merchants of its own."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import pytest_asyncio
import sqlalchemy as sa
from pydantic import BaseModel

import orders
from contracts.envelope import EventEnvelope
from contracts.events.identity import StoreCreated, StoreStatusChanged
from contracts.events.inventory import ProductCreated
from contracts.events.members import MemberCreated
from contracts.events.orders import ReturnedLine
from contracts.events.payments import PaymentRefunded, PaymentSucceeded
from contracts.money import Money
from contracts.registry import make_envelope
from contracts.topics import topic_for_event_type
from orders.config import Settings
from orders.main import create_app
from orders.models import CatalogProduct, Member, Store
from servicekit.auth import (
    Role,
    TokenVerifier,
    generate_signing_key,
)
from servicekit.bus.base import OutgoingMessage
from servicekit.bus.factory import InMemoryBus
from servicekit.db import Database
from servicekit.testing.plugin import CreateDatabase
from servicekit.testing.tokens import bearer_headers, static_verifier
from servicekit.testing.wait import eventually

MIGRATIONS = Path(orders.__file__).parent / "migrations"
KEY = generate_signing_key()
CASHIER = frozenset({"orders:write"})
MANAGER = frozenset({"orders:write", "orders:discount", "catalog:manage", "inventory:adjust"})
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def verifier() -> TokenVerifier:
    return static_verifier(KEY)


def auth_headers(
    merchant_id: uuid.UUID,
    scopes: frozenset[str] = MANAGER,
    store_ids: frozenset[uuid.UUID] | None = None,
) -> dict[str, str]:
    return bearer_headers(
        KEY, merchant_id, scopes=scopes, store_ids=store_ids, role=Role.STORE_MANAGER
    )


def envelope(
    payload: BaseModel, merchant_id: uuid.UUID, aggregate_id: uuid.UUID, producer: str
) -> EventEnvelope:
    return make_envelope(
        payload, producer=producer, aggregate_id=aggregate_id, merchant_id=merchant_id
    )


async def publish(bus: InMemoryBus, event: EventEnvelope) -> None:
    await bus.broker.append(
        [
            OutgoingMessage(
                topic=topic_for_event_type(event.type),
                key=event.aggregate_id.encode(),
                value=event.model_dump_json().encode(),
            )
        ]
    )


def events_on(bus: InMemoryBus, event_type: str, merchant_id: uuid.UUID) -> list[EventEnvelope]:
    found = []
    for message in bus.broker.messages(topic_for_event_type(event_type)):
        event = EventEnvelope.model_validate_json(message.value)
        if event.type == event_type and event.merchant_id == merchant_id:
            found.append(event)
    return found


def store_created(
    merchant_id: uuid.UUID,
    store_id: uuid.UUID,
    *,
    status: str = "active",
    version: int = 1,
    announced_by: uuid.UUID | None = None,
) -> EventEnvelope:
    """identity.store.created; ``announced_by`` puts another merchant on the envelope."""
    created = StoreCreated(
        store_id=store_id,
        merchant_id=merchant_id,
        code=f"S{store_id.hex[:6]}",
        name="Store",
        address="1 Main Street",
        timezone="Asia/Shanghai",
        business_hours=[],
        region_id=None,
        status=status,  # type: ignore[arg-type]
        version=version,
    )
    return envelope(created, announced_by or merchant_id, store_id, "identity")


def settings_for(url: str, **overrides: Any) -> Settings:
    return Settings(
        database_url=url,
        log_format="console",
        outbox_poll_interval=0.1,
        consumer_retry_backoff=0.01,
        consumer_max_attempts=2,
        **overrides,
    )


@dataclass
class Harness:
    client: httpx.AsyncClient
    bus: InMemoryBus
    database: Database
    known_stores: set[tuple[uuid.UUID, uuid.UUID]] = field(default_factory=set)

    auth = staticmethod(auth_headers)
    envelope = staticmethod(envelope)

    async def publish(self, event: EventEnvelope) -> None:
        await publish(self.bus, event)

    def events(self, event_type: str, merchant_id: uuid.UUID) -> list[EventEnvelope]:
        return events_on(self.bus, event_type, merchant_id)

    async def wait_events(
        self, event_type: str, merchant_id: uuid.UUID, count: int
    ) -> list[EventEnvelope]:
        async def enough() -> bool:
            return len(self.events(event_type, merchant_id)) >= count

        await eventually(enough, timeout=10.0)
        return self.events(event_type, merchant_id)

    async def replica_version(self, product_id: uuid.UUID) -> int | None:
        async with self.database.transaction() as session:
            version = await session.scalar(
                sa.select(CatalogProduct.version).where(CatalogProduct.product_id == product_id)
            )
        return version

    async def applied(self, event: EventEnvelope) -> None:
        """Wait until a consumer of orders has taken ``event`` (it is in the inbox)."""

        async def taken() -> bool:
            async with self.database.transaction() as session:
                found = await session.scalar(
                    sa.text("SELECT 1 FROM inbox WHERE event_id = :id"), {"id": event.event_id}
                )
            return found is not None

        await eventually(taken, timeout=10.0)

    async def dead_lettered(self, event: EventEnvelope) -> None:
        """Wait until ``event`` was refused to its topic's dead-letter topic."""
        dlq = topic_for_event_type(event.type) + ".dlq"
        needle = str(event.event_id).encode()

        async def parked() -> bool:
            return any(needle in m.value for m in self.bus.broker.messages(dlq))

        await eventually(parked, timeout=10.0)

    async def outboxed(self, event_type: str, merchant_id: uuid.UUID) -> int:
        """How many ``event_type`` events orders has written for the merchant (published or
        not): what its handlers and endpoints decided, with no wait on the relay."""
        async with self.database.transaction() as session:
            count = await session.scalar(
                sa.text(
                    "SELECT count(*) FROM outbox WHERE type = :type "
                    "AND payload->>'merchant_id' = :merchant"
                ),
                {"type": event_type, "merchant": str(merchant_id)},
            )
        return int(count or 0)

    def dead_letters(self, event_type: str, merchant_id: uuid.UUID) -> list[bytes]:
        dlq = topic_for_event_type(event_type) + ".dlq"
        needle = str(merchant_id).encode()
        return [m.value for m in self.bus.broker.messages(dlq) if needle in m.value]

    async def publish_applied(self, event: EventEnvelope) -> None:
        await self.publish(event)
        await self.applied(event)

    async def seed_store(
        self, merchant_id: uuid.UUID, store_id: uuid.UUID | None = None
    ) -> uuid.UUID:
        """A store in the replica, delivered as identity would deliver it."""
        store_id = store_id or uuid.uuid4()
        await self.publish(store_created(merchant_id, store_id))

        async def present() -> bool:
            async with self.database.transaction() as session:
                found = await session.get(Store, (merchant_id, store_id))
            return found is not None

        await eventually(present, timeout=10.0)
        self.known_stores.add((merchant_id, store_id))
        return store_id

    async def seed_member(self, merchant_id: uuid.UUID) -> uuid.UUID:
        member_id = uuid.uuid4()
        created = MemberCreated(member_id=member_id, level="gold")
        await self.publish(envelope(created, merchant_id, member_id, "members"))

        async def present() -> bool:
            async with self.database.transaction() as session:
                found = await session.get(Member, (merchant_id, member_id))
            return found is not None

        await eventually(present, timeout=10.0)
        return member_id

    async def seed_product(
        self,
        merchant_id: uuid.UUID,
        *,
        price: int = 1000,
        kitchen_station: str | None = None,
        barcode: str | None = None,
        name: str = "Noodles",
    ) -> uuid.UUID:
        """A product in the replica, delivered as inventory would deliver it."""
        product_id = uuid.uuid4()
        created = ProductCreated(
            product_id=product_id,
            version=1,
            sku=f"SKU-{product_id.hex[:8]}",
            barcode=barcode,
            name=name,
            unit="each",
            price=Money.of(price, "CNY"),
            tax_rate_bps=600,
            status="active",
            kitchen_station=kitchen_station,
        )
        await self.publish(envelope(created, merchant_id, product_id, "inventory"))

        async def present() -> bool:
            return await self.replica_version(product_id) is not None

        await eventually(present, timeout=10.0)
        return product_id

    async def place(
        self,
        merchant_id: uuid.UUID,
        store_id: uuid.UUID,
        lines: list[dict[str, Any]],
        *,
        order_id: uuid.UUID | None = None,
        channel: str = "pos",
        scopes: frozenset[str] = MANAGER,
        seed_store: bool = True,
        **extra: Any,
    ) -> httpx.Response:
        if seed_store and (merchant_id, store_id) not in self.known_stores:
            await self.seed_store(merchant_id, store_id)
        body = {
            "id": str(order_id or uuid.uuid4()),
            "channel": channel,
            "store_id": str(store_id),
            "occurred_at": T0.isoformat(),
            "lines": lines,
            **extra,
        }
        return await self.client.post(
            "/v1/orders",
            json=body,
            headers={**self.auth(merchant_id, scopes), "Idempotency-Key": uuid.uuid4().hex},
        )

    async def order(self, merchant_id: uuid.UUID, order_id: str) -> dict[str, Any]:
        response = await self.client.get(f"/v1/orders/{order_id}", headers=self.auth(merchant_id))
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    async def wait_status(
        self, merchant_id: uuid.UUID, order_id: str, status: str
    ) -> dict[str, Any]:
        async def reached() -> bool:
            return (await self.order(merchant_id, order_id))["status"] == status

        await eventually(reached, timeout=10.0)
        return await self.order(merchant_id, order_id)

    async def pay(
        self,
        merchant_id: uuid.UUID,
        store_id: uuid.UUID,
        order_id: str,
        amount: int,
        *,
        method: str = "cash",
        payment_id: uuid.UUID | None = None,
    ) -> EventEnvelope:
        payment_id = payment_id or uuid.uuid4()
        succeeded = PaymentSucceeded(
            payment_id=payment_id,
            order_id=uuid.UUID(order_id),
            store_id=store_id,
            method=method,  # type: ignore[arg-type]
            amount=Money.of(amount, "CNY"),
            fee=Money.of(0, "CNY"),
            net=Money.of(amount, "CNY"),
            fee_rate_bps=0,
            provider=method,
        )
        event = envelope(succeeded, merchant_id, payment_id, "payments")
        await self.publish(event)
        return event

    async def refund(
        self,
        merchant_id: uuid.UUID,
        store_id: uuid.UUID,
        order_id: str,
        payment_id: uuid.UUID,
        amount: int,
        returned: list[tuple[uuid.UUID, int]] = (),  # type: ignore[assignment]
    ) -> EventEnvelope:
        refund_id = uuid.uuid4()
        refunded = PaymentRefunded(
            refund_id=refund_id,
            payment_id=payment_id,
            order_id=uuid.UUID(order_id),
            store_id=store_id,
            method="cash",
            amount=Money.of(amount, "CNY"),
            fee_refunded=Money.of(0, "CNY"),
            returned_lines=[ReturnedLine(product_id=p, quantity=q) for p, q in returned],
        )
        event = envelope(refunded, merchant_id, payment_id, "payments")
        await self.publish(event)
        return event

    async def set_store_status(
        self, merchant_id: uuid.UUID, store_id: uuid.UUID, status: str, version: int
    ) -> None:
        changed = StoreStatusChanged(
            store_id=store_id,
            merchant_id=merchant_id,
            status=status,  # type: ignore[arg-type]
            previous_status="active",
            version=version,
        )
        await self.publish(envelope(changed, merchant_id, store_id, "identity"))


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def orders_url(create_database: CreateDatabase) -> str:
    return await create_database("orders", migrations=MIGRATIONS)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def harness(orders_url: str) -> AsyncIterator[Harness]:
    bus = InMemoryBus()
    app = create_app(settings_for(orders_url), bus=bus, token_verifier=verifier())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield Harness(client=client, bus=bus, database=app.state.database)


@pytest.fixture(scope="session")
def kit() -> SimpleNamespace:
    """The helpers above, for tests that run apps of their own."""
    return SimpleNamespace(
        verifier=verifier,
        settings_for=settings_for,
        auth=auth_headers,
        migrations=MIGRATIONS,
        store_created=store_created,
    )
