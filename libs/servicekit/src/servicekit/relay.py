"""The outbox relay: publishes committed outbox rows to the bus, in order per aggregate.

How it stays correct:
- Rows are claimed inside a transaction with ``FOR UPDATE SKIP LOCKED`` and marked sent in the
  same transaction after the bus acknowledged them. A relay that dies in between leaves the
  rows unsent and unlocked: they are published again (at-least-once; consumers deduplicate).
  Nothing is ever stranded in a "claimed" state, so no sweeper is needed for crashed relays.
- Per-aggregate order: the outbox is split into lanes by a hash of the aggregate id, and a
  relay publishes a lane only while it holds that lane's transaction-scoped advisory lock. Two
  relays never publish the same lane at once, so events of one aggregate leave in ``seq`` order.
- Wake-up: a LISTEN connection is woken by the insert trigger's NOTIFY; polling every
  ``poll_interval`` covers lost notifications and a dropped LISTEN connection.
- Broker down: the batch is retried with exponential backoff; rows stay in the outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from servicekit.bus.base import OutgoingMessage, PublishError, PublisherTransport
from servicekit.db import Database
from servicekit.schema import OUTBOX_CHANNEL, OUTBOX_LANES, OUTBOX_LOCK_NAMESPACE
from servicekit.telemetry import metrics
from servicekit.telemetry.tracing import kafka_headers, publish_span

log = logging.getLogger(__name__)

_LOCK_LANES = sa.text(
    "SELECT lane FROM generate_series(0, :last) AS lane WHERE pg_try_advisory_xact_lock(:ns, lane)"
).bindparams(last=OUTBOX_LANES - 1, ns=OUTBOX_LOCK_NAMESPACE)

_CLAIM = sa.text(
    "SELECT id, seq, topic, aggregateid, type, payload::text AS payload, headers "
    "FROM outbox WHERE sent_at IS NULL AND lane = ANY(:lanes) "
    "ORDER BY seq LIMIT :limit FOR UPDATE SKIP LOCKED"
)

_MARK_SENT = sa.text(
    "UPDATE outbox SET sent_at = now(), attempts = attempts + 1, last_error = NULL "
    "WHERE id = ANY(:ids)"
)

_RECORD_FAILURE = sa.text(
    "UPDATE outbox SET attempts = attempts + 1, last_error = :error WHERE id = ANY(:ids)"
)

_PRUNE = sa.text(
    "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE sent_at IS NOT NULL "
    "AND sent_at < now() - make_interval(secs => :age) LIMIT :limit)"
)

_BACKLOG = sa.text("SELECT count(*), min(created_at) FROM outbox WHERE sent_at IS NULL")


@dataclass(frozen=True, slots=True)
class ClaimedRow:
    id: Any
    seq: int
    topic: str
    aggregateid: str
    type: str
    payload: str
    headers: dict[str, str]


class OutboxRelay:
    def __init__(
        self,
        database: Database,
        publisher: PublisherTransport,
        *,
        service: str,
        batch_size: int = 500,
        poll_interval: float = 1.0,
        retention_seconds: float = 72 * 3600,
        max_backoff: float = 30.0,
    ) -> None:
        self.database = database
        self.publisher = publisher
        self.service = service
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.retention_seconds = retention_seconds
        self.max_backoff = max_backoff
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._listener: asyncpg.Connection | None = None
        self._last_prune = 0.0

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        self._stopping.clear()
        self._tasks = [
            asyncio.create_task(self._run(), name=f"{self.service}-outbox-relay"),
            asyncio.create_task(self._listen(), name=f"{self.service}-outbox-listen"),
        ]

    async def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []

    def wake(self) -> None:
        self._wake.set()

    # -- main loop ---------------------------------------------------------------------------
    async def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                published = await self.relay_once()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                delay = min(self.max_backoff, 0.1 * 2 ** min(failures, 10))
                delay *= 0.5 + random.random()  # jitter: replicas should not retry in step
                log.warning(
                    "outbox relay failed, retrying in %.1fs: %s",
                    delay,
                    exc,
                    extra={"attempt": failures},
                )
                await self._sleep(delay)
                continue
            if published >= self.batch_size:
                continue  # more is waiting: no sleep
            await self._maybe_prune()
            if published == 0:
                await self._sleep(self.poll_interval)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)
        self._wake.clear()

    async def relay_once(self) -> int:
        """Publish one batch; return how many rows were published."""
        failure: PublishError | None = None
        async with self.database.engine.connect() as conn, conn.begin():
            lanes = [row[0] for row in await conn.execute(_LOCK_LANES)]
            if not lanes:
                return 0  # every lane is held by another relay
            rows = await self._claim(conn, lanes)
            if not rows:
                return 0
            try:
                await self._publish(rows)
            except PublishError as exc:
                # Recorded in the claim transaction itself: these rows are locked by it.
                failure = exc
                await conn.execute(
                    _RECORD_FAILURE, {"ids": [r.id for r in rows], "error": str(exc)[:2000]}
                )
            else:
                await self._mark_sent(conn, rows)
        if failure is not None:
            raise failure
        for topic in {r.topic for r in rows}:
            metrics.outbox_published_total.labels(self.service, topic).inc(
                sum(1 for r in rows if r.topic == topic)
            )
        return len(rows)

    async def _claim(self, conn: AsyncConnection, lanes: list[int]) -> list[ClaimedRow]:
        result = await conn.execute(_CLAIM, {"lanes": lanes, "limit": self.batch_size})
        return [
            ClaimedRow(
                id=r.id,
                seq=r.seq,
                topic=r.topic,
                aggregateid=r.aggregateid,
                type=r.type,
                payload=r.payload,
                headers=dict(r.headers or {}),
            )
            for r in result
        ]

    async def _publish(self, rows: Sequence[ClaimedRow]) -> None:
        messages: list[OutgoingMessage] = []
        for row in rows:
            with publish_span(row.topic, row.aggregateid, row.headers) as headers:
                headers = dict(headers)
                headers["event_id"] = str(row.id)
                headers["event_type"] = row.type
                messages.append(
                    OutgoingMessage(
                        topic=row.topic,
                        key=row.aggregateid.encode(),
                        value=row.payload.encode(),
                        headers=kafka_headers(headers),
                    )
                )
        try:
            await self.publisher.publish(messages)
        except PublishError:
            metrics.outbox_publish_errors_total.labels(self.service).inc()
            raise

    async def _mark_sent(self, conn: AsyncConnection, rows: Sequence[ClaimedRow]) -> None:
        await conn.execute(_MARK_SENT, {"ids": [r.id for r in rows]})

    # -- housekeeping ---------------------------------------------------------------------
    async def _maybe_prune(self) -> None:
        now = time.monotonic()
        if now - self._last_prune < 60:
            return
        self._last_prune = now
        await self.prune()

    async def prune(self, *, limit: int = 10_000) -> int:
        """Delete sent rows older than the retention; return how many."""
        async with self.database.engine.begin() as conn:
            result = await conn.execute(_PRUNE, {"age": self.retention_seconds, "limit": limit})
        return int(getattr(result, "rowcount", 0) or 0)

    async def backlog(self) -> tuple[int, datetime | None]:
        """Unsent rows and the creation time of the oldest."""
        async with self.database.engine.connect() as conn:
            row = (await conn.execute(_BACKLOG)).one()
        return int(row[0]), row[1]

    # -- LISTEN/NOTIFY -----------------------------------------------------------------------
    async def _listen(self) -> None:
        while not self._stopping.is_set():
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self.database.raw_dsn())
                await conn.add_listener(OUTBOX_CHANNEL, self._on_notify)
                self._wake.set()  # rows may have arrived while we were not listening
                while not self._stopping.is_set() and not conn.is_closed():
                    await asyncio.sleep(5)
                    await conn.execute("SELECT 1")  # notice a dead connection
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("outbox LISTEN connection lost: %s", exc)
                await asyncio.sleep(1)
            finally:
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await conn.close()

    def _on_notify(self, *_: object) -> None:
        self._wake.set()
