"""Idempotent event consumers (the inbox).

A consumer is a Kafka consumer group plus a registry of handlers by event type. For every
message it records ``(consumer, event_id)`` in the ``inbox`` table with ``INSERT ... ON CONFLICT
DO NOTHING`` in the same transaction as the handler's effect, and commits the offset only after
that transaction committed. A redelivered event (relay retry, consumer crash before the offset
commit, rebalance) finds its inbox row and is skipped, so each event is applied once.

Throughput: the messages one poll fetched are applied in one transaction, all partitions
together. When a handler fails, that transaction is rolled back and each partition's messages
are applied in a transaction of their own; when that fails too, they are applied one by one
(each in its own transaction) with retries and backoff; a message that still fails goes to
``<topic>.dlq`` with the error, and the partition moves on.

Never wedged: every broker call has a deadline (the transport's), and a consumer that cannot
make progress restarts itself (a new member of its group, topics re-created if the broker lost
them): when a call fails or times out, when ``max_commit_failures`` offset commits in a row
fail, or when it has held no partition for ``assignment_timeout`` seconds. From the failure
until a poll succeeds again it reports itself ``stuck`` (``/readyz`` and the
``countertop_consumer_stuck`` gauge).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import traceback
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import EventEnvelope
from contracts.topics import dlq_topic, topic_for_event_type
from servicekit.bus.base import (
    BusMessage,
    ConsumerTransport,
    OutgoingMessage,
    PublisherTransport,
    TopicPartition,
)
from servicekit.db import Database
from servicekit.telemetry import metrics
from servicekit.telemetry.tracing import headers_from_kafka, kafka_headers, process_span

log = logging.getLogger(__name__)

Handler = Callable[[AsyncSession, EventEnvelope], Awaitable[None]]

inbox_table = sa.table(
    "inbox",
    sa.column("consumer", sa.Text),
    sa.column("event_id", pg.UUID(as_uuid=True)),
    sa.column("event_type", sa.Text),
)


# Built once; executed with the batch's rows (one multi-row INSERT ... RETURNING).
_CLAIM = (
    pg.insert(inbox_table)
    .on_conflict_do_nothing(index_elements=["consumer", "event_id"])
    .returning(inbox_table.c.event_id)
)


class HandlerRegistry:
    """Handlers of one consumer, by event type.

    >>> handlers = HandlerRegistry()
    >>> @handlers.on("orders.order.paid")
    ... async def deduct_stock(session, event): ...

    The topic defaults to the registered topic of the event type; ``topic=`` overrides it.
    """

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}
        self._topics: dict[str, str] = {}

    def on(self, event_type: str, *, topic: str | None = None) -> Callable[[Handler], Handler]:
        resolved = topic or topic_for_event_type(event_type)

        def register(handler: Handler) -> Handler:
            if event_type in self._handlers:
                raise ValueError(f"a handler for {event_type} is already registered")
            self._handlers[event_type] = handler
            self._topics[event_type] = resolved
            return handler

        return register

    def add(self, event_type: str, handler: Handler, *, topic: str | None = None) -> None:
        self.on(event_type, topic=topic)(handler)

    def get(self, event_type: str) -> Handler | None:
        return self._handlers.get(event_type)

    @property
    def event_types(self) -> list[str]:
        return sorted(self._handlers)

    @property
    def topics(self) -> list[str]:
        return sorted(set(self._topics.values()))


class PoisonMessage(Exception):
    """The message can never be applied (not an event, not valid): straight to the DLQ."""


class ConsumerStuck(Exception):
    """The consumer cannot make progress as it is: it restarts."""


@dataclass(slots=True)
class _Decoded:
    message: BusMessage
    event: EventEnvelope | None
    error: str | None = None


@dataclass
class ConsumerStats:
    applied: int = 0
    duplicates: int = 0
    skipped: int = 0
    dead_lettered: int = 0
    failures: int = 0
    dead_letter_reasons: list[str] = field(default_factory=list)


class EventConsumer:
    def __init__(
        self,
        *,
        name: str,
        service: str,
        database: Database,
        transport: ConsumerTransport,
        dlq_publisher: PublisherTransport,
        handlers: HandlerRegistry,
        max_attempts: int = 5,
        retry_backoff: float = 0.2,
        max_records: int = 500,
        max_commit_failures: int = 3,
        assignment_timeout: float = 30.0,
        max_restart_backoff: float = 10.0,
        fetch_deadline: float = 30.0,
    ) -> None:
        self.name = name
        self.service = service
        self.database = database
        self.transport = transport
        self.dlq_publisher = dlq_publisher
        self.handlers = handlers
        self.max_attempts = max_attempts
        self.retry_backoff = retry_backoff
        self.max_records = max_records
        self.max_commit_failures = max_commit_failures
        # 0 turns the check off (a group with more members than partitions leaves some idle).
        self.assignment_timeout = assignment_timeout
        self.max_restart_backoff = max_restart_backoff
        # Beyond the transport's own deadlines: a fetch that never returns restarts the consumer.
        self.fetch_deadline = fetch_deadline
        self.stats = ConsumerStats()
        self.restarts = 0
        self._stuck_reason: str | None = None
        self._commit_failures = 0
        # Offsets whose commit failed, committed with the next poll's (or alone).
        self._uncommitted: dict[TopicPartition, int] = {}
        self._unassigned_since: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.ready = asyncio.Event()

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        self._stopping.clear()
        self._task = asyncio.create_task(self._run(), name=f"consumer-{self.name}")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            await self.transport.stop()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def stuck(self) -> str | None:
        """Why the consumer cannot make progress now, or None while it can."""
        return self._stuck_reason

    def _set_stuck(self, reason: str | None) -> None:
        self._stuck_reason = reason
        metrics.consumer_stuck.labels(self.service, self.name).set(0 if reason is None else 1)

    async def _run(self) -> None:
        failures = 0
        self._set_stuck(None)
        while not self._stopping.is_set():
            try:
                await self.transport.start()
                self.ready.set()
                self._commit_failures = 0
                self._uncommitted = {}
                self._unassigned_since = None
                while not self._stopping.is_set():
                    # A poll returns as soon as records are there: the timeout only bounds how
                    # often an idle consumer looks at its assignment and failed commits.
                    await self.poll_once(timeout_ms=1_000)
                    if self._stuck_reason is None:
                        failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                self.restarts += 1
                reason = f"{type(exc).__name__}: {exc}"[:500]
                self._set_stuck(reason)
                metrics.consumer_restarts_total.labels(
                    self.service, self.name, type(exc).__name__
                ).inc()
                delay = min(self.max_restart_backoff, 0.2 * 2 ** min(failures, 8))
                log.warning("consumer %s failed, restarting in %.1fs: %s", self.name, delay, exc)
                with contextlib.suppress(Exception):
                    await self.transport.stop()
                await asyncio.sleep(delay)

    # -- one poll --------------------------------------------------------------------------
    async def poll_once(self, timeout_ms: int = 500) -> int:
        """Fetch and apply one batch; return how many messages were handled."""
        try:
            async with asyncio.timeout(timeout_ms / 1000 + self.fetch_deadline):
                batch = await self.transport.fetch(timeout_ms, self.max_records)
        except TimeoutError:
            raise ConsumerStuck(f"a fetch did not return within {self.fetch_deadline}s") from None
        offsets: dict[TopicPartition, int] = {}
        parts = [(tp, messages) for tp, messages in batch.items() if messages]
        if len(parts) < 2 or not await self._apply_partitions_together(parts):
            for tp, messages in parts:
                await self._apply_partition_batch(tp, messages)
        for tp, messages in parts:
            offsets[tp] = messages[-1].offset + 1
        if offsets or self._uncommitted:
            # The offsets move only after the effects are committed (one request for all).
            await self._commit({**self._uncommitted, **offsets})
            await self._record_lag()
        self._check_assignment(bool(batch))
        return sum(len(m) for m in batch.values())

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        try:
            await self.transport.commit(offsets)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # The effects are committed and the inbox holds them: a redelivery is harmless,
            # so a failed commit is retried with the next batch's offsets, a few times.
            self._commit_failures += 1
            self._uncommitted = offsets
            log.warning(
                "consumer %s could not commit offsets (%d in a row): %s",
                self.name,
                self._commit_failures,
                exc,
            )
            if self._commit_failures >= self.max_commit_failures:
                raise ConsumerStuck(
                    f"{self._commit_failures} offset commits failed in a row: {exc}"
                ) from exc
            self._set_stuck(f"offset commits failing: {exc}"[:500])
            return
        self._uncommitted = {}
        self._commit_failures = 0
        self._set_stuck(None)

    def _check_assignment(self, fetched: bool) -> None:
        if fetched or self.transport.assigned() > 0 or not self.assignment_timeout:
            self._unassigned_since = None
            if self._commit_failures == 0 and self._stuck_reason is not None:
                self._set_stuck(None)
            return
        now = time.monotonic()
        if self._unassigned_since is None:
            self._unassigned_since = now
        elif self.assignment_timeout and now - self._unassigned_since > self.assignment_timeout:
            raise ConsumerStuck(f"no partition assigned for {now - self._unassigned_since:.0f}s")

    async def _record_lag(self) -> None:
        with contextlib.suppress(Exception):
            for tp, lag in (await self.transport.lag()).items():
                metrics.consumer_lag.labels(self.service, self.name, tp.topic, tp.partition).set(
                    lag
                )

    def _decode(self, message: BusMessage) -> _Decoded:
        try:
            event = EventEnvelope.model_validate_json(message.value)
        except ValidationError as exc:
            return _Decoded(message, None, f"not a valid event envelope: {exc}")
        return _Decoded(message, event)

    async def _apply_partitions_together(
        self, parts: Sequence[tuple[TopicPartition, Sequence[BusMessage]]]
    ) -> bool:
        """Apply what one poll brought from several partitions in one transaction (one
        commit and one inbox claim instead of one per partition); False when that failed and
        nothing was applied, for the partitions to be applied each on its own."""
        decoded = [self._decode(m) for _, messages in parts for m in messages]
        try:
            await self._apply_together(decoded)
        except Exception as exc:
            log.info("poll of %d partitions failed together (%s); one by one", len(parts), exc)
            return False
        return True

    async def _apply_partition_batch(
        self, tp: TopicPartition, messages: Sequence[BusMessage]
    ) -> None:
        decoded = [self._decode(m) for m in messages]
        try:
            await self._apply_together(decoded)
            return
        except Exception as exc:
            if len(decoded) == 1 and self.max_attempts <= 1:
                await self._dead_letter(decoded[0], exc)
                return
            log.info("batch on %s failed (%s); applying one by one", tp, exc)
        for item in decoded:
            await self._apply_alone(item)

    async def _apply_together(self, decoded: Sequence[_Decoded]) -> None:
        if any(d.event is None for d in decoded):
            raise PoisonMessage("batch holds an undecodable message")
        events = [d.event for d in decoded if d.event is not None]
        outcomes: list[tuple[EventEnvelope, str]] = []
        async with self.database.transaction() as session:
            fresh = await self._claim(session, events)
            for d in decoded:
                assert d.event is not None
                event = d.event
                handler = self.handlers.get(event.type)
                if handler is None:
                    outcomes.append((event, "skipped"))
                elif event.event_id not in fresh:
                    outcomes.append((event, "duplicate"))
                else:
                    await self._call(handler, session, d)
                    fresh.discard(event.event_id)  # the same event twice in one batch
                    outcomes.append((event, "applied"))
        for event, outcome in outcomes:
            self._count(event.type, outcome)

    async def _apply_alone(self, item: _Decoded) -> None:
        if item.event is None:
            await self._dead_letter(item, PoisonMessage(item.error or "undecodable"))
            return
        event = item.event
        handler = self.handlers.get(event.type)
        if handler is None:
            self._count(event.type, "skipped")
            return
        last_error: BaseException | None = None
        for attempt in range(1, self.max_attempts + 1):
            try:
                async with self.database.transaction() as session:
                    fresh = await self._claim(session, [event])
                    if event.event_id not in fresh:
                        self._count(event.type, "duplicate")
                        return
                    await self._call(handler, session, item)
                self._count(event.type, "applied")
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if is_infrastructure_error(exc):
                    raise  # not the message's fault: stop, re-read from the last offset
                last_error = exc
                self.stats.failures += 1
                metrics.consumer_handler_errors_total.labels(
                    self.service, self.name, event.type
                ).inc()
                if isinstance(exc, PoisonMessage):
                    break
                log.warning(
                    "handler for %s failed (attempt %d/%d): %s",
                    event.type,
                    attempt,
                    self.max_attempts,
                    exc,
                    extra={"event_id": str(event.event_id)},
                )
                if attempt < self.max_attempts:
                    await asyncio.sleep(self.retry_backoff * 2 ** (attempt - 1))
        assert last_error is not None
        await self._dead_letter(item, last_error)

    async def _claim(self, session: AsyncSession, events: Sequence[EventEnvelope]) -> set[object]:
        rows = [
            {"consumer": self.name, "event_id": e.event_id, "event_type": e.type}
            for e in events
            if self.handlers.get(e.type) is not None
        ]
        if not rows:
            return set()
        return {r[0] for r in await session.execute(_CLAIM, rows)}

    async def _call(self, handler: Handler, session: AsyncSession, item: _Decoded) -> None:
        assert item.event is not None
        message = item.message
        with process_span(
            message.topic, item.event.type, headers_from_kafka(message.headers), self.name
        ):
            await handler(session, item.event)

    async def _dead_letter(self, item: _Decoded, error: BaseException) -> None:
        message = item.message
        reason = f"{type(error).__name__}: {error}"
        headers = headers_from_kafka(message.headers)
        headers.update(
            {
                "dlq_reason": reason[:4000],
                "dlq_consumer": self.name,
                "dlq_source_topic": message.topic,
                "dlq_source_partition": str(message.partition),
                "dlq_source_offset": str(message.offset),
                "dlq_trace": "".join(traceback.format_exception(error))[-4000:],
            }
        )
        await self.dlq_publisher.publish(
            [
                OutgoingMessage(
                    topic=dlq_topic(message.topic),
                    key=message.key,
                    value=message.value,
                    headers=kafka_headers(headers),
                )
            ]
        )
        self.stats.dead_letter_reasons.append(reason)
        event_type = item.event.type if item.event else "unknown"
        self._count(event_type, "dead_lettered")
        log.error(
            "message %s/%d@%d sent to %s: %s",
            message.topic,
            message.partition,
            message.offset,
            dlq_topic(message.topic),
            reason,
        )

    def _count(self, event_type: str, outcome: str) -> None:
        if outcome == "applied":
            self.stats.applied += 1
        elif outcome == "duplicate":
            self.stats.duplicates += 1
        elif outcome == "skipped":
            self.stats.skipped += 1
        elif outcome == "dead_lettered":
            self.stats.dead_lettered += 1
        metrics.consumer_handled_total.labels(self.service, self.name, event_type, outcome).inc()


def is_infrastructure_error(exc: BaseException) -> bool:
    """A lost database connection says nothing about the message being processed."""
    if isinstance(exc, OSError | ConnectionError | sa.exc.InterfaceError):
        return True
    return isinstance(exc, sa.exc.DBAPIError) and bool(exc.connection_invalidated)


def subscribed_topics(registries: Iterable[HandlerRegistry]) -> list[str]:
    return sorted({t for r in registries for t in r.topics})
