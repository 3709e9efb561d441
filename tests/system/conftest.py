"""System-test harness: identity and the four checkout services (inventory, orders, members,
payments) running in this process on the real PostgreSQL and the real broker.

Each service gets its own freshly migrated database and runs its full lifespan (outbox relay,
consumer groups, background tasks); the services meet only through the broker and identity's
JWKS, exactly as in production. Tests talk to them over HTTP through ASGI clients, with tokens
that identity issued at sign-in. The ``system`` fixture (one per test module) gives:

* :class:`Service` per app: its client, database, relay and consumers, with the operations a
  system test needs to break things (lose a consumer's offset commits, stop and restart a
  consumer or a relay, make the relay publish everything a second time);
* :meth:`System.onboard`: a merchant signed up through identity, with its HQ admin, a store
  manager and a cashier signed in;
* the sandbox provider's notifications delivered straight into payments, each one recorded
  with the answer it got (:attr:`System.notifications`);
* :meth:`System.dead_letters`: what of a merchant's traffic ended on a dead-letter topic.

See docs/runbooks/system-tests.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest_asyncio
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition
from fastapi import FastAPI
from sqlalchemy.sql import Executable

import inventory
import members
import orders
import payments
from contracts.topics import dlq_topic
from identity.main import create_app as create_identity
from identity.testing import MIGRATIONS as IDENTITY_MIGRATIONS
from identity.testing import Api, CapturingSender, make_settings
from inventory.config import Settings as InventorySettings
from inventory.main import create_app as create_inventory
from members.config import Settings as MembersSettings
from members.main import create_app as create_members
from orders.config import Settings as OrdersSettings
from orders.main import create_app as create_orders
from payments.config import Settings as PaymentsSettings
from payments.main import create_app as create_payments
from servicekit.app import TOKEN_AUDIENCE, TOKEN_ISSUER, Runtime
from servicekit.auth import JwksKeySource, TokenVerifier
from servicekit.consumer import EventConsumer
from servicekit.db import Database
from servicekit.relay import OutboxRelay
from servicekit.settings import ServiceSettings
from servicekit.testing.plugin import CreateDatabase
from servicekit.testing.servers import Servers
from servicekit.testing.wait import eventually

JWKS_URL = "http://identity/.well-known/jwks.json"

#: Short group timeouts: a stopped consumer's partitions move on in seconds, not tens.
FAST_RUNTIME: Mapping[str, Any] = {
    "log_format": "console",
    "db_pool_size": 4,
    "outbox_poll_interval": 0.2,
    "consumer_session_timeout_ms": 2_000,
    "consumer_heartbeat_interval_ms": 500,
    "consumer_rebalance_timeout_ms": 1_000,
    "consumer_retry_backoff": 0.05,
    "consumer_max_attempts": 3,
}


def _migrations(package: Any) -> Path:
    return Path(package.__file__).parent / "migrations"


# --- one running service -------------------------------------------------------------------


@dataclass
class Service:
    """A running app and the handles a system test needs on it."""

    name: str
    app: FastAPI
    client: httpx.AsyncClient

    @property
    def runtime(self) -> Runtime:
        runtime: Runtime = self.app.state.runtime
        return runtime

    @property
    def database(self) -> Database:
        return self.runtime.database

    @property
    def relay(self) -> OutboxRelay:
        relay = self.runtime.relay
        assert relay is not None, f"{self.name} runs no relay"
        return relay

    @property
    def consumers(self) -> list[EventConsumer]:
        return self.runtime.consumers

    def consumer(self, name: str) -> EventConsumer:
        """The current consumer ``name`` (``"sales"`` or its group, ``"inventory.sales"``)."""
        group = name if "." in name else f"{self.name}.{name}"
        for consumer in self.runtime.consumers:
            if consumer.name == group:
                return consumer
        raise KeyError(f"{self.name} has no consumer {group}")

    def withhold_offset_commits(self, name: str) -> None:
        """From now on consumer ``name`` applies events but its offset commits are lost, as
        for a process about to die between its database commit and its offset commit:
        whatever it applies from here is delivered again to its successor."""
        consumer = self.consumer(name)

        async def lost(offsets: Mapping[Any, int]) -> None:
            return None

        consumer.transport.commit = lost  # type: ignore[method-assign]

    async def stop_consumer(self, name: str) -> EventConsumer:
        """Stop consumer ``name``: it leaves its group and reads nothing until restarted."""
        consumer = self.consumer(name)
        await consumer.stop()
        return consumer

    async def restart_consumer(self, name: str) -> EventConsumer:
        """Put a fresh consumer in place of the stopped one, built the way
        ``servicekit.app.create_app`` builds it (same group, handlers, dead-letter publisher
        and retry limits, a new transport): what a restarted process would run. It resumes
        from the group's committed offsets."""
        old = self.consumer(name)
        if old.running:
            raise RuntimeError(f"consumer {old.name} is still running; stop it first")
        short = old.name.removeprefix(f"{self.name}.")
        fresh = EventConsumer(
            name=old.name,
            service=old.service,
            database=old.database,
            transport=self.runtime.bus.consumer(
                old.name, old.handlers.topics, f"{self.name}-{short}"
            ),
            dlq_publisher=old.dlq_publisher,
            handlers=old.handlers,
            max_attempts=old.max_attempts,
            retry_backoff=old.retry_backoff,
            max_records=old.max_records,
        )
        # The app's lifespan stops whatever is in this list at shutdown.
        self.runtime.consumers[self.runtime.consumers.index(old)] = fresh
        await fresh.start()
        await asyncio.wait_for(fresh.ready.wait(), timeout=30)
        return fresh

    async def stop_relay(self) -> None:
        """Stop publishing the outbox; the service keeps writing events into it."""
        await self.relay.stop()

    async def start_relay(self) -> None:
        await self.relay.start()

    async def backlog(self) -> int:
        """Outbox rows not published yet."""
        count, _ = await self.relay.backlog()
        return count

    async def scalar(self, statement: Executable) -> Any:
        """One value read from this service's own database (replica probes)."""
        async with self.database.transaction() as session:
            return await session.scalar(statement)

    async def replay_outbox(self) -> Counter[str]:
        """Mark every published outbox row unsent again, as if the relay had died after the
        broker acknowledged a batch and before recording it: the relay publishes all of them
        a second time, under their original event ids. Returns the event types re-armed."""
        async with self.database.transaction() as session:
            rows = await session.execute(
                sa.text("UPDATE outbox SET sent_at = NULL WHERE sent_at IS NOT NULL RETURNING type")
            )
            replayed = Counter(str(row[0]) for row in rows)
        self.relay.wake()
        return replayed


# --- people and the merchant ------------------------------------------------------------------


@dataclass(frozen=True)
class Staff:
    """A staff member signed in through identity, with the access token identity issued."""

    id: str
    phone: str
    role: str
    access_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


@dataclass(frozen=True)
class Merchant:
    """A merchant signed up through identity with its first store and three staff."""

    id: str
    code: str
    store_id: str
    hq: Staff
    manager: Staff
    cashier: Staff


@dataclass(frozen=True)
class Notification:
    """One provider notification delivered to payments, and the answer it got."""

    payment_id: str
    status: str
    http_status: int
    result: str | None


# --- the system ------------------------------------------------------------------------------


@dataclass
class System:
    """The five running services and what a test does across them."""

    identity: Service
    inventory: Service
    orders: Service
    members: Service
    payments: Service
    servers: Servers
    sender: CapturingSender
    notifications: list[Notification] = field(default_factory=list)

    @property
    def services(self) -> list[Service]:
        return [self.identity, self.inventory, self.orders, self.members, self.payments]

    @property
    def identity_api(self) -> Api:
        return Api(self.identity.client, self.sender)

    async def onboard(self, *, cashier_scopes: list[str] | None = None) -> Merchant:
        """Sign a merchant up through identity (verification code, merchant, store, super
        admin), then have its HQ admin create a store manager and a cashier; everyone signs
        in. ``cashier_scopes`` defaults to ``orders:write`` and ``members:register`` (a cashier
        registers members at the till)."""
        api = self.identity_api
        tenant = await api.signup()
        store_id = str(tenant.store["id"])
        manager = await api.staff(tenant, tenant.admin, "store_manager", store_id=store_id)
        cashier = await api.staff(
            tenant,
            tenant.admin,
            "cashier",
            store_id=store_id,
            scopes=cashier_scopes or ["orders:write", "members:register"],
        )
        return Merchant(
            id=str(tenant.merchant["id"]),
            code=tenant.code,
            store_id=store_id,
            hq=Staff(tenant.admin.id, tenant.admin.phone, "hq_admin", tenant.admin.access),
            manager=Staff(manager.id, manager.phone, "store_manager", manager.access),
            cashier=Staff(cashier.id, cashier.phone, "cashier", cashier.access),
        )

    def consumer_groups(self) -> list[tuple[Service, EventConsumer]]:
        return [(service, c) for service in self.services for c in service.consumers]

    def duplicates_seen(self) -> dict[str, int]:
        """Per consumer group, how many deliveries its inbox recognised as already applied."""
        return {c.name: c.stats.duplicates for _, c in self.consumer_groups()}

    async def replay_everything(self) -> dict[str, int]:
        """Make every service's relay publish its whole outbox a second time (see
        :meth:`Service.replay_outbox`); returns, per consumer group, how many of the
        replayed events it has a handler for, i.e. the duplicates it must now skip."""
        replayed: Counter[str] = Counter()
        for service in self.services:
            replayed.update(await service.replay_outbox())
        return {
            consumer.name: sum(n for t, n in replayed.items() if consumer.handlers.get(t))
            for _, consumer in self.consumer_groups()
        }

    async def drained(self) -> bool:
        """Every relay has published everything written so far."""
        return all([await service.backlog() == 0 for service in self.services])

    async def dead_letters(self, merchant_id: str) -> list[dict[str, Any]]:
        """Messages of ``merchant_id`` on any dead-letter topic of the running consumers,
        with the consumer and reason the dead-letter headers give."""
        topics = sorted(
            {dlq_topic(t) for _, c in self.consumer_groups() for t in c.handlers.topics}
        )
        reader = AIOKafkaConsumer(
            bootstrap_servers=self.servers.kafka_bootstrap_servers,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await reader.start()
        found: list[dict[str, Any]] = []
        try:
            await reader.topics()  # loads the metadata partitions_for_topic reads
            partitions = [
                TopicPartition(topic, p)
                for topic in topics
                for p in sorted(reader.partitions_for_topic(topic) or ())
            ]
            if not partitions:
                return found
            reader.assign(partitions)
            await reader.seek_to_beginning(*partitions)
            ends = await reader.end_offsets(partitions)
            async with asyncio.timeout(30):
                while any([await reader.position(tp) < ends[tp] for tp in partitions]):
                    batch = await reader.getmany(timeout_ms=500)
                    for records in batch.values():
                        for record in records:
                            try:
                                event = json.loads(record.value or b"{}")
                            except ValueError:
                                event = {}
                            if event.get("merchant_id") != merchant_id:
                                continue
                            headers = {k: v.decode() for k, v in record.headers}
                            found.append(
                                {
                                    "topic": record.topic,
                                    "type": event.get("type"),
                                    "consumer": headers.get("dlq_consumer"),
                                    "reason": headers.get("dlq_reason"),
                                }
                            )
        finally:
            await reader.stop()
        return found


def _notifier(holder: dict[str, System]) -> Callable[[str, bytes, dict[str, str]], Awaitable[int]]:
    """The sandbox provider's callback, delivered through payments' own ASGI client (the app
    does not exist yet when the provider is built, hence the holder)."""

    async def notify(path: str, body: bytes, headers: dict[str, str]) -> int:
        system = holder["system"]
        response = await system.payments.client.post(path, content=body, headers=headers)
        sent = json.loads(body)
        result = None
        if response.headers.get("content-type", "").startswith("application/json"):
            result = response.json().get("result")
        system.notifications.append(
            Notification(str(sent["payment_id"]), str(sent["status"]), response.status_code, result)
        )
        return response.status_code

    return notify


async def _run(stack: contextlib.AsyncExitStack, name: str, app: FastAPI, base_url: str) -> Service:
    await stack.enter_async_context(app.router.lifespan_context(app))
    client = await stack.enter_async_context(
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)
    )
    return Service(name, app, client)


@contextlib.asynccontextmanager
async def running_system(
    create_database: CreateDatabase, servers: Servers
) -> AsyncIterator[System]:
    """Identity, inventory, orders, members and payments on their own databases and the
    broker; every checkout service verifies identity's tokens through its JWKS."""
    broker: dict[str, Any] = {"kafka_bootstrap_servers": servers.kafka_bootstrap_servers}
    # One at a time: alembic's environment is process-global.
    urls = {
        "identity": await create_database("sys_identity", migrations=IDENTITY_MIGRATIONS),
        "inventory": await create_database("sys_inventory", migrations=_migrations(inventory)),
        "orders": await create_database("sys_orders", migrations=_migrations(orders)),
        "members": await create_database("sys_members", migrations=_migrations(members)),
        "payments": await create_database("sys_payments", migrations=_migrations(payments)),
    }
    sender = CapturingSender()
    holder: dict[str, System] = {}
    async with contextlib.AsyncExitStack() as stack:
        identity_app = create_identity(
            make_settings(urls["identity"], **broker, **FAST_RUNTIME), code_sender=sender
        )
        identity = await _run(stack, "identity", identity_app, "http://identity")
        jwks_http = await stack.enter_async_context(
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=identity_app), base_url="http://identity"
            )
        )

        def verifier() -> TokenVerifier:
            # One key cache per service, as each process would have.
            return TokenVerifier(
                JwksKeySource(JWKS_URL, http_client=jwks_http),
                issuer=TOKEN_ISSUER,
                audience=TOKEN_AUDIENCE,
            )

        def settings(cls: type[ServiceSettings], name: str, **extra: Any) -> Any:
            return cls(database_url=urls[name], **broker, **FAST_RUNTIME, **extra)

        inventory_app = create_inventory(
            settings(InventorySettings, "inventory"), token_verifier=verifier()
        )
        orders_app = create_orders(settings(OrdersSettings, "orders"), token_verifier=verifier())
        members_app = create_members(
            settings(MembersSettings, "members"), token_verifier=verifier()
        )
        payments_app = create_payments(
            settings(
                PaymentsSettings, "payments", sandbox_notify_delay=0.05, orders_url="http://orders"
            ),
            token_verifier=verifier(),
            sandbox_notifier=_notifier(holder),
            # A payment that outruns the orders events reads its order through from orders.
            orders_transport=httpx.ASGITransport(app=orders_app),
        )
        system = System(
            identity=identity,
            inventory=await _run(stack, "inventory", inventory_app, "http://inventory"),
            orders=await _run(stack, "orders", orders_app, "http://orders"),
            members=await _run(stack, "members", members_app, "http://members"),
            payments=await _run(stack, "payments", payments_app, "http://payments"),
            servers=servers,
            sender=sender,
        )
        holder["system"] = system
        for _, consumer in system.consumer_groups():
            await asyncio.wait_for(consumer.ready.wait(), timeout=30)
        yield system
        # Let the sandbox finish calling back before the apps go away.
        await payments_app.state.sandbox.idle()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def system(create_database: CreateDatabase, servers: Servers) -> AsyncIterator[System]:
    async with running_system(create_database, servers) as running:
        yield running


async def wait_for(probe: Callable[[], Awaitable[Any]], what: str, timeout: float = 30.0) -> None:
    """``eventually`` with a message saying what never happened."""
    try:
        await eventually(probe, timeout=timeout)
    except AssertionError:
        raise AssertionError(f"not in {timeout:.0f}s: {what}") from None
