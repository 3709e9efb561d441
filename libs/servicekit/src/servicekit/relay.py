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
- One bad row never blocks the others: a batch that fails is retried row by row. A row the
  broker refuses for what it is (over the producer's size limit, say) is parked at once; a row
  that keeps failing alone while others go through is parked after ``max_attempts``. Parking
  (``parked_at``, the error kept in ``last_error``) writes a ``platform.outbox.row_parked``
  alert in the same transaction, and the lane moves on. Failures while the broker is away are
  not the rows' fault and never count toward parking.
- Where each row landed (partition and offset at the broker's ack) is recorded with
  ``sent_at``, one statement per batch; the log auditor (``servicekit.audit``) compares it with
  the broker's log and re-arms what the log lost. Sent rows are pruned only after the
  retention and only once an audit found the log clean after they were sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from contracts.envelope import EventEnvelope
from contracts.events.platform import OutboxRowParked
from contracts.topics import ALERTS_TOPIC
from servicekit.bus.base import Delivery, OutgoingMessage, PublishError, PublisherTransport
from servicekit.db import Database
from servicekit.outbox import outbox_row, outbox_table
from servicekit.schema import OUTBOX_CHANNEL, OUTBOX_LANES, OUTBOX_LOCK_NAMESPACE
from servicekit.telemetry import metrics
from servicekit.telemetry.tracing import kafka_headers, publish_span

log = logging.getLogger(__name__)

_LOCK_LANES = sa.text(
    "SELECT lane FROM generate_series(0, :last) AS lane WHERE pg_try_advisory_xact_lock(:ns, lane)"
).bindparams(last=OUTBOX_LANES - 1, ns=OUTBOX_LOCK_NAMESPACE)

_CLAIM = sa.text(
    "SELECT id, seq, topic, aggregateid, type, payload::text AS payload, headers "
    "FROM outbox WHERE sent_at IS NULL AND parked_at IS NULL AND lane = ANY(:lanes) "
    "ORDER BY seq LIMIT :limit FOR UPDATE SKIP LOCKED"
)

# One statement per batch, whatever its size: where each row landed comes in as three arrays.
_MARK_SENT = sa.text(
    "UPDATE outbox AS o SET sent_at = now(), attempts = o.attempts + 1, last_error = NULL, "
    "kafka_partition = d.kafka_partition, kafka_offset = d.kafka_offset "
    "FROM unnest(CAST(:ids AS uuid[]), CAST(:partitions AS integer[]), "
    "CAST(:offsets AS bigint[])) AS d(id, kafka_partition, kafka_offset) "
    "WHERE o.id = d.id"
)

# The bus failed, not the rows: keep the reason, count nothing toward parking.
_RECORD_FAILURE = sa.text("UPDATE outbox SET last_error = :error WHERE id = ANY(:ids)")

# The row failed on its own: count it, and park it when it is hopeless or out of attempts.
_RECORD_ROW_FAILURE = sa.text(
    "UPDATE outbox SET attempts = attempts + 1, last_error = :error, "
    "parked_at = CASE WHEN :hopeless OR attempts + 1 >= :max_attempts THEN now() END "
    "WHERE id = :id RETURNING attempts, parked_at IS NOT NULL AS parked"
)

_PRUNE = sa.text(
    "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE sent_at IS NOT NULL "
    "AND sent_at < now() - make_interval(secs => :age) "
    "AND (CAST(:audited_before AS timestamptz) IS NULL OR sent_at < :audited_before) "
    "LIMIT :limit)"
)

_PARKED = sa.text("SELECT count(*) FROM outbox WHERE parked_at IS NOT NULL")

#: How many consecutive rows may fail for the bus's reasons in a row-by-row pass before the
#: pass gives up: the broker is away, trying the rest would only wait out their timeouts.
_MAX_CONSECUTIVE_BUS_FAILURES = 3

_BACKLOG = sa.text(
    "SELECT count(*), min(created_at) FROM outbox WHERE sent_at IS NULL AND parked_at IS NULL"
)


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
        retention_seconds: float = 7 * 24 * 3600,
        max_backoff: float = 30.0,
        max_attempts: int = 5,
        audited_before: Callable[[], datetime | None] | None = None,
        on_recovered: Callable[[], None] | None = None,
    ) -> None:
        self.database = database
        self.publisher = publisher
        self.service = service
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.retention_seconds = retention_seconds
        self.max_backoff = max_backoff
        self.max_attempts = max_attempts
        # When given: rows sent after what it returns (the start of the last clean log audit;
        # None before the first) are never pruned, a broker may still have lost them.
        self.audited_before = audited_before
        # Called when publishing works again after failures: the broker may be a new one.
        self.on_recovered = on_recovered
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._listener: asyncpg.Connection | None = None
        #: Set while the LISTEN connection is up (a NOTIFY wakes the relay at once).
        self.listening = asyncio.Event()
        self._last_prune = 0.0
        #: Rows the last cycle claimed.
        self._claimed = 0

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
            # A row committed from here on is claimed by this cycle or wakes the next one.
            self._wake.clear()
            try:
                published = await self.relay_once()
                if failures and self.on_recovered is not None:
                    self.on_recovered()
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
            if 0 < published < self._claimed:
                continue  # rows held back or failed on their own: their next try, at once
            if published and not self.listening.is_set():
                continue  # no NOTIFY would wake it: look again at once, as while busy
            await self._maybe_prune()
            # Everything claimed went out: what was committed since is announced by NOTIFY,
            # so looking again at once would mostly find nothing (a transaction and four
            # statements per empty look).
            await self._sleep(self.poll_interval)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)
        self._wake.clear()

    async def relay_once(self) -> int:
        """Publish one batch; return how many rows were published (parked ones not counted).

        Raises PublishError when the bus failed (after recording it): the caller backs off.
        """
        failure: PublishError | None = None
        sent: list[ClaimedRow] = []
        async with self.database.engine.connect() as conn, conn.begin():
            self._claimed = 0
            lanes = [row[0] for row in await conn.execute(_LOCK_LANES)]
            if not lanes:
                return 0  # every lane is held by another relay
            rows = await self._claim(conn, lanes)
            self._claimed = len(rows)
            if not rows:
                return 0
            try:
                deliveries = await self._publish(rows)
            except PublishError as exc:
                # Recorded in the claim transaction itself: these rows are locked by it.
                if exc.transient and not await self._bus_answers():
                    # The broker is away: row by row would only wait out more timeouts.
                    await conn.execute(
                        _RECORD_FAILURE, {"ids": [r.id for r in rows], "error": str(exc)[:2000]}
                    )
                    failure = exc
                else:
                    log.info(
                        "outbox batch of %d failed (%s); publishing row by row", len(rows), exc
                    )
                    sent, failure = await self._publish_one_by_one(conn, rows, exc)
            else:
                await self._mark_sent(conn, rows, deliveries)
                sent = list(rows)
        self._count_published(sent)
        if failure is not None:
            raise failure
        return len(sent)

    async def _publish_one_by_one(
        self, conn: AsyncConnection, rows: Sequence[ClaimedRow], batch_error: PublishError
    ) -> tuple[list[ClaimedRow], PublishError | None]:
        """Publish ``rows`` each on its own; return those sent and the bus's failure, if any."""
        sent: list[ClaimedRow] = []
        deliveries: list[Delivery] = []
        bus_failures: list[ClaimedRow] = []
        bus_error: PublishError | None = None
        judged: list[ClaimedRow] = []  # failures recorded against the row itself
        # An aggregate whose row was not published keeps its later rows back: its order holds.
        held: set[str] = set()
        consecutive = 0
        for index, row in enumerate(rows):
            if row.aggregateid in held:
                continue
            if index in batch_error.rejected:
                # Refused for what it is: sending it again would be refused again.
                reason = batch_error.rejected[index]
                error = PublishError(reason, rejected={0: reason})
            else:
                try:
                    deliveries.extend(await self._publish([row]))
                except PublishError as exc:
                    error = exc
                else:
                    sent.append(row)
                    consecutive = 0
                    continue
            if error.transient:
                bus_error = error
                bus_failures.append(row)
                held.add(row.aggregateid)
                consecutive += 1
                if consecutive >= _MAX_CONSECUTIVE_BUS_FAILURES and not sent:
                    break
                continue
            reason = error.rejected.get(0, str(error))
            judged.append(row)
            await self._record_row_failure(conn, row, reason, hopeless=True)  # parks it
        if sent:
            await self._mark_sent(conn, sent, deliveries)
        if bus_failures and (sent or await self._bus_answers()):
            # Others went through meanwhile, or the bus answers: these rows failed for their
            # own reasons.
            for row in bus_failures:
                judged.append(row)
                await self._record_row_failure(conn, row, str(bus_error), hopeless=False)
            bus_error = None
        if bus_error is not None:
            done = {r.id for r in sent} | {r.id for r in judged}
            left = [r.id for r in rows if r.id not in done]
            await conn.execute(_RECORD_FAILURE, {"ids": left, "error": str(bus_error)[:2000]})
        return sent, bus_error

    async def _bus_answers(self) -> bool:
        try:
            await self.publisher.ping()
        except Exception:
            return False
        return True

    async def _record_row_failure(
        self, conn: AsyncConnection, row: ClaimedRow, reason: str, *, hopeless: bool
    ) -> bool:
        """Count a failure of ``row`` alone; park it (and alert) when it is hopeless or out of
        attempts. Returns whether it was parked."""
        result = (
            await conn.execute(
                _RECORD_ROW_FAILURE,
                {
                    "id": row.id,
                    "error": reason[:2000],
                    "hopeless": hopeless,
                    "max_attempts": self.max_attempts,
                },
            )
        ).one()
        if not result.parked:
            log.warning(
                "outbox row %s (%s) failed (attempt %d/%d): %s",
                row.id,
                row.type,
                result.attempts,
                self.max_attempts,
                reason,
            )
            return False
        log.error(
            "outbox row %s (%s, %d bytes) parked after %d attempt(s): %s",
            row.id,
            row.type,
            len(row.payload),
            result.attempts,
            reason,
        )
        if row.topic != ALERTS_TOPIC:  # an alert about an alert would chase its own tail
            alert = EventEnvelope(
                type="platform.outbox.row_parked",
                producer=self.service,
                aggregate_type="outbox",
                aggregate_id=str(row.id),
                payload=OutboxRowParked(
                    service=self.service,
                    outbox_id=row.id,
                    event_type=row.type,
                    topic=row.topic,
                    aggregate_id=row.aggregateid,
                    attempts=result.attempts,
                    size_bytes=len(row.payload.encode()),
                    error=reason[:2000],
                ).model_dump(mode="json"),
            )
            await conn.execute(
                sa.insert(outbox_table).values(outbox_row(alert, topic=ALERTS_TOPIC))
            )
        return True

    def _count_published(self, rows: Sequence[ClaimedRow]) -> None:
        for topic in {r.topic for r in rows}:
            metrics.outbox_published_total.labels(self.service, topic).inc(
                sum(1 for r in rows if r.topic == topic)
            )

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

    async def _publish(self, rows: Sequence[ClaimedRow]) -> list[Delivery]:
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
            return await self.publisher.publish(messages)
        except PublishError:
            metrics.outbox_publish_errors_total.labels(self.service).inc()
            raise

    async def _mark_sent(
        self, conn: AsyncConnection, rows: Sequence[ClaimedRow], deliveries: Sequence[Delivery]
    ) -> None:
        await conn.execute(
            _MARK_SENT,
            {
                "ids": [r.id for r in rows],
                "partitions": [d.partition for d in deliveries],
                "offsets": [d.offset for d in deliveries],
            },
        )

    # -- housekeeping ---------------------------------------------------------------------
    async def _maybe_prune(self) -> None:
        now = time.monotonic()
        if now - self._last_prune < 60:
            return
        self._last_prune = now
        await self.prune()

    async def prune(self, *, limit: int = 10_000) -> int:
        """Delete sent rows older than the retention, and only those a clean log audit has
        covered since (when the relay has an auditor); return how many."""
        audited_before: datetime | None = None
        if self.audited_before is not None:
            audited_before = self.audited_before()
            if audited_before is None:
                return 0  # no clean audit yet: any sent row may still be needed
        async with self.database.engine.begin() as conn:
            result = await conn.execute(
                _PRUNE,
                {
                    "age": self.retention_seconds,
                    "limit": limit,
                    "audited_before": audited_before,
                },
            )
        return int(getattr(result, "rowcount", 0) or 0)

    async def parked(self) -> int:
        """Rows parked (skipped by the relay until re-armed)."""
        async with self.database.engine.connect() as conn:
            return int((await conn.execute(_PARKED)).scalar_one())

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
                self.listening.set()
                self._wake.set()  # rows may have arrived while we were not listening
                while not self._stopping.is_set() and not conn.is_closed():
                    await asyncio.sleep(5)
                    await conn.execute("SELECT 1")  # notice a dead connection
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.listening.clear()
                log.debug("outbox LISTEN connection lost: %s", exc)
                await asyncio.sleep(1)
            finally:
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await conn.close()

    def _on_notify(self, *_: object) -> None:
        self._wake.set()
