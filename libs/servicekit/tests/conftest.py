"""Fixtures of the servicekit tests: two services' databases, a topic of their own, and a
consumer whose effect is NOT idempotent by itself (a plain insert), so an event applied twice
shows up as two rows."""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest_asyncio
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import EventEnvelope
from servicekit.bus.base import ConsumerTransport, PublisherTransport
from servicekit.bus.kafka import ensure_topics
from servicekit.consumer import EventConsumer, HandlerRegistry
from servicekit.db import Database
from servicekit.outbox import add_event
from servicekit.relay import OutboxRelay
from servicekit.testing.plugin import CreateDatabase
from servicekit.testing.servers import Servers

EVENT_TYPE = "inventory.stock.noted"

NOTES_DDL = "CREATE TABLE notes (id uuid PRIMARY KEY, aggregate_id text NOT NULL, n int NOT NULL)"
APPLIED_DDL = (
    "CREATE TABLE applied (event_id uuid NOT NULL, aggregate_id text NOT NULL, n int NOT NULL,"
    " applied_seq bigint GENERATED ALWAYS AS IDENTITY)"
)


def unique_topic() -> str:
    return f"inventory.test-{secrets.token_hex(4)}"


@dataclass
class Pair:
    """A producing service and a consuming service, each with its own database."""

    producer: Database
    consumer: Database
    topic: str

    async def write(
        self, aggregate_id: str, n: int, *, fail: bool = False, note: str | None = None
    ) -> EventEnvelope:
        """One business change and its event in one transaction; ``fail`` rolls it back;
        ``note`` makes the event as large as needed."""
        event = EventEnvelope(
            type=EVENT_TYPE,
            producer="inventory",
            aggregate_type="stock",
            aggregate_id=aggregate_id,
            payload={"n": n} if note is None else {"n": n, "note": note},
        )
        try:
            async with self.producer.transaction() as session:
                await session.execute(
                    sa.text("INSERT INTO notes (id, aggregate_id, n) VALUES (:id, :a, :n)"),
                    {"id": event.event_id, "a": aggregate_id, "n": n},
                )
                await add_event(session, event, topic=self.topic)
                if fail:
                    raise RuntimeError("business rule failed after the event was written")
        except RuntimeError:
            if not fail:
                raise
        return event

    def relay(self, publisher: PublisherTransport, **kwargs: object) -> OutboxRelay:
        return OutboxRelay(self.producer, publisher, service="producer", **kwargs)  # type: ignore[arg-type]

    def consumer_for(
        self,
        transport: ConsumerTransport,
        dlq: PublisherTransport,
        *,
        group: str,
        fail_when: Callable[[EventEnvelope], bool] | None = None,
        max_attempts: int = 3,
    ) -> EventConsumer:
        handlers = HandlerRegistry()

        async def record(session: AsyncSession, event: EventEnvelope) -> None:
            if fail_when is not None and fail_when(event):
                raise ValueError(f"cannot apply event n={event.payload['n']}")
            await session.execute(
                sa.text("INSERT INTO applied (event_id, aggregate_id, n) VALUES (:e, :a, :n)"),
                {"e": event.event_id, "a": event.aggregate_id, "n": event.payload["n"]},
            )

        handlers.add(EVENT_TYPE, record, topic=self.topic)
        return EventConsumer(
            name=group,
            service="consumer",
            database=self.consumer,
            transport=transport,
            dlq_publisher=dlq,
            handlers=handlers,
            max_attempts=max_attempts,
            retry_backoff=0.01,
        )

    async def applied(self) -> list[tuple[uuid.UUID, str, int]]:
        async with self.consumer.transaction() as session:
            rows = await session.execute(
                sa.text("SELECT event_id, aggregate_id, n FROM applied ORDER BY applied_seq")
            )
            return [(r[0], r[1], r[2]) for r in rows]

    async def unsent(self) -> int:
        async with self.producer.transaction() as session:
            return int(
                (
                    await session.execute(
                        sa.text("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
                    )
                ).scalar_one()
            )

    async def drain(self, consumer: EventConsumer, expected: int, timeout: float = 20.0) -> None:
        """Poll ``consumer`` until ``expected`` rows are applied, then a few more times to
        catch anything that would be applied twice."""
        deadline = time.monotonic() + timeout
        while len(await self.applied()) < expected:
            if time.monotonic() > deadline:
                raise AssertionError(f"only {len(await self.applied())} of {expected} applied")
            await consumer.poll_once(timeout_ms=200)
        for _ in range(3):
            await consumer.poll_once(timeout_ms=100)


@pytest_asyncio.fixture(loop_scope="session")
async def pair(create_database: CreateDatabase, servers: Servers) -> AsyncIterator[Pair]:
    producer = Database(await create_database("producer"), pool_size=4)
    consumer = Database(await create_database("consumer"), pool_size=4)
    async with producer.engine.begin() as conn:
        await conn.exec_driver_sql(NOTES_DDL)
    async with consumer.engine.begin() as conn:
        await conn.exec_driver_sql(APPLIED_DDL)
    topic = unique_topic()
    await ensure_topics(servers.kafka_bootstrap_servers, [topic, topic + ".dlq"], 3)
    yield Pair(producer, consumer, topic)
    await producer.dispose()
    await consumer.dispose()
