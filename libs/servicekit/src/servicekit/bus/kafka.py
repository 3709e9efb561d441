"""The Kafka transport (aiokafka).

Correctness never relies on idempotent producers or transactions (the local broker, Tansu,
has neither): the producer is at-least-once and consumers deduplicate by event id.

Every broker call has a deadline: aiokafka retries some requests (metadata, commits against a
moving coordinator) without end, and a caller that waits on it wedges.

Topics are created explicitly with the configured partitions, never implicitly: a metadata
request for a missing topic would otherwise create it with the broker's default partition count
(after a broker lost its log, say), and keys would land on other partitions than before.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Iterable, Sequence

import aiokafka.client
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    CorruptRecordException,
    InvalidTopicError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    TopicAlreadyExistsError,
)
from aiokafka.protocol.metadata import MetadataRequest
from aiokafka.structs import TopicPartition as KafkaTopicPartition

from servicekit.bus.base import (
    BusMessage,
    Delivery,
    LogBounds,
    OutgoingMessage,
    PublishError,
    TopicPartition,
    TopicsMissing,
)

log = logging.getLogger(__name__)

# aiokafka builds its metadata requests with the protocol's default, which lets the broker
# create any topic a client merely asks about. Topics are created by ensure_topics only.
aiokafka.client.MetadataRequest = functools.partial(
    MetadataRequest, allow_auto_topic_creation=False
)

#: Errors that are about the message itself: sending it again fails the same way.
_REJECTED_ERRORS = (
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    InvalidTopicError,
    CorruptRecordException,
)

#: The producer's limit on one request, hence on one message (Kafka's default).
MAX_REQUEST_SIZE = 1024 * 1024


class KafkaPublisher:
    def __init__(
        self,
        bootstrap_servers: str,
        *,
        client_id: str = "countertop",
        publish_timeout: float = 15.0,
        partitions: int = 3,
        max_request_size: int = MAX_REQUEST_SIZE,
    ) -> None:
        # aiokafka can wait for metadata of an unreachable broker indefinitely: bound it.
        self.publish_timeout = publish_timeout
        self.partitions = partitions
        self.max_request_size = max_request_size
        self._bootstrap = bootstrap_servers
        self._client_id = client_id
        self._producer: AIOKafkaProducer | None = None
        # Topics seen to exist since the producer (re)started; a broker that lost its log may
        # have lost them, so the set is forgotten whenever the producer is reset.
        self._known_topics: set[str] = set()

    async def start(self) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            client_id=self._client_id,
            acks="all",
            enable_idempotence=False,
            linger_ms=2,
            max_batch_size=256 * 1024,
            request_timeout_ms=10_000,
            retry_backoff_ms=200,
            max_request_size=self.max_request_size,
        )
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        self._producer = producer

    async def stop(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()

    async def _ensure_started(self) -> AIOKafkaProducer:
        if self._producer is None:
            try:
                async with asyncio.timeout(self.publish_timeout):
                    await self.start()
            except (KafkaError, OSError, TimeoutError) as exc:
                raise PublishError(f"broker unreachable: {exc}") from exc
        assert self._producer is not None
        return self._producer

    async def publish(self, messages: Sequence[OutgoingMessage]) -> list[Delivery]:
        producer = await self._ensure_started()
        rejected: dict[int, str] = {}
        sent: list[tuple[int, asyncio.Future[object]]] = []
        try:
            async with asyncio.timeout(self.publish_timeout):
                await self._ensure_topics({m.topic for m in messages})
                for i, m in enumerate(messages):
                    try:
                        future = await producer.send(
                            m.topic, value=m.value, key=m.key, headers=list(m.headers)
                        )
                    except _REJECTED_ERRORS as exc:
                        rejected[i] = _reason(exc)
                        continue
                    sent.append((i, future))
                results = await asyncio.gather(*(f for _, f in sent), return_exceptions=True)
        except (KafkaError, OSError, TimeoutError) as exc:
            # A producer that lost the broker can stay wedged; start afresh next time.
            await self._reset()
            raise PublishError(_reason(exc)) from exc
        deliveries: list[Delivery | None] = [None] * len(messages)
        for (i, _), result in zip(sent, results, strict=True):
            if isinstance(result, _REJECTED_ERRORS):
                rejected[i] = _reason(result)
            elif isinstance(result, BaseException):
                await self._reset()
                raise PublishError(_reason(result)) from result
            else:
                deliveries[i] = Delivery(result.partition, result.offset)  # type: ignore[attr-defined]
        if rejected:
            raise PublishError(f"the broker refused {len(rejected)} message(s)", rejected=rejected)
        return [d for d in deliveries if d is not None]

    async def _ensure_topics(self, topics: set[str]) -> None:
        missing = topics - self._known_topics
        if missing:
            await ensure_topics(self._bootstrap, missing, self.partitions)
            self._known_topics |= missing

    async def _reset(self) -> None:
        self._known_topics.clear()
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                await asyncio.wait_for(producer.stop(), timeout=5)
            except (KafkaError, OSError, TimeoutError):
                log.debug("producer stop failed during reset", exc_info=True)

    async def ping(self) -> None:
        producer = await self._ensure_started()
        try:
            await asyncio.wait_for(producer.client.fetch_all_metadata(), timeout=3)
        except (KafkaError, OSError, TimeoutError) as exc:
            raise PublishError(f"broker unreachable: {exc}") from exc


class KafkaConsumerTransport:
    def __init__(
        self,
        bootstrap_servers: str,
        *,
        group_id: str,
        topics: Iterable[str],
        client_id: str = "countertop",
        session_timeout_ms: int = 10_000,
        heartbeat_interval_ms: int = 3_000,
        rebalance_timeout_ms: int = 5_000,
        fetch_max_wait_ms: int = 50,
        idle_fetch_max_wait_ms: int = 2_000,
        partitions: int = 3,
        call_timeout: float = 15.0,
    ) -> None:
        # How long the broker may hold a fetch waiting for data. The embedded broker (Tansu)
        # does not answer a fetch the moment data arrives: it looks again after half the wait,
        # then after half the rest, and so on, so a record can wait up to half the fetch wait.
        # 50 ms keeps checkout effects prompt while messages flow, but every consumer then
        # sends 20 fetches a second, which is most of what an idle stack costs. So the wait
        # grows with the time since the last record (half of it, up to
        # ``idle_fetch_max_wait_ms``): what a first record after a lull waits stays a quarter
        # of the lull at most (a second at most with the default 2 s), and an idle consumer
        # asks every two seconds. Kafka itself answers as soon as a record arrives.
        self._fetch_max_wait_ms = fetch_max_wait_ms
        self._idle_fetch_max_wait_ms = max(idle_fetch_max_wait_ms, fetch_max_wait_ms)
        self._last_record_at = time.monotonic()
        self._current_wait_ms = fetch_max_wait_ms
        self._timeouts = {
            "session_timeout_ms": session_timeout_ms,
            "heartbeat_interval_ms": heartbeat_interval_ms,
            "rebalance_timeout_ms": rebalance_timeout_ms,
        }
        self._bootstrap = bootstrap_servers
        self._group_id = group_id
        self._topics = sorted(set(topics))
        self._client_id = client_id
        self._partitions = partitions
        #: The deadline of every broker call (start, fetch beyond its own wait, commit, stop).
        self.call_timeout = call_timeout
        self._consumer: AIOKafkaConsumer | None = None
        self._unassigned_since: float | None = None

    @property
    def group_id(self) -> str:
        return self._group_id

    async def start(self) -> None:
        async with asyncio.timeout(self.call_timeout):
            # A topic the broker lost is created again, with our partitions, before subscribing.
            await ensure_topics(self._bootstrap, self._topics, self._partitions)
        consumer = AIOKafkaConsumer(
            *self._topics,
            bootstrap_servers=self._bootstrap,
            group_id=self._group_id,
            client_id=self._client_id,
            enable_auto_commit=False,
            # Also what happens when the committed offset lies beyond the log's end (a broker
            # that lost its log): re-read from the start; the inbox drops what was applied.
            auto_offset_reset="earliest",
            isolation_level="read_uncommitted",
            max_poll_interval_ms=300_000,
            fetch_max_wait_ms=self._fetch_max_wait_ms,
            request_timeout_ms=int(self.call_timeout * 1000),
            metadata_max_age_ms=30_000,
            # How often aiokafka's fetch routine looks around without being woken (it is woken
            # by fetch answers, consumption and rebalances): 200 ms by default, five wake-ups a
            # second of every idle consumer for nothing.
            consumer_timeout_ms=1_000,
            **self._timeouts,
        )
        try:
            async with asyncio.timeout(self.call_timeout):
                await consumer.start()
        except BaseException:
            await _stop_quietly(consumer.stop())
            raise
        self._consumer = consumer
        self._unassigned_since = None
        self._last_record_at = time.monotonic()
        self._current_wait_ms = self._fetch_max_wait_ms

    async def stop(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await _stop_quietly(consumer.stop())

    def fetch_wait_ms(self, now: float | None = None) -> int:
        """The fetch wait for the next request: short while records flow, longer as the
        consumer stays without any."""
        quiet_ms = ((time.monotonic() if now is None else now) - self._last_record_at) * 1000
        return int(min(self._idle_fetch_max_wait_ms, max(self._fetch_max_wait_ms, quiet_ms / 2)))

    def _adapt_fetch_wait(self, consumer: AIOKafkaConsumer, got_records: bool) -> None:
        now = time.monotonic()
        if got_records:
            self._last_record_at = now
        wait = self.fetch_wait_ms(now)
        # Round to a step so that a growing wait is not written on every poll.
        if wait != self._current_wait_ms and (
            wait in (self._fetch_max_wait_ms, self._idle_fetch_max_wait_ms)
            or abs(wait - self._current_wait_ms) >= 50
        ):
            self._current_wait_ms = wait
            # aiokafka builds every fetch request from this attribute; the request in flight
            # keeps its wait, which the broker cuts short when a record arrives.
            fetcher = getattr(consumer, "_fetcher", None)
            if fetcher is not None and hasattr(fetcher, "_fetch_max_wait_ms"):
                fetcher._fetch_max_wait_ms = wait

    def _require(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError("consumer not started")
        return self._consumer

    def assigned(self) -> int:
        return len(self._consumer.assignment()) if self._consumer is not None else 0

    async def fetch(
        self, timeout_ms: int, max_records: int
    ) -> dict[TopicPartition, list[BusMessage]]:
        consumer = self._require()
        self._check_topics(consumer)
        async with asyncio.timeout(timeout_ms / 1000 + self.call_timeout):
            batch = await consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
        self._adapt_fetch_wait(consumer, bool(batch))
        return {
            TopicPartition(tp.topic, tp.partition): [
                BusMessage(
                    topic=r.topic,
                    partition=r.partition,
                    offset=r.offset,
                    key=r.key,
                    value=r.value if r.value is not None else b"",
                    headers=list(r.headers),
                )
                for r in records
            ]
            for tp, records in batch.items()
        }

    def _check_topics(self, consumer: AIOKafkaConsumer, grace: float = 2.0) -> None:
        # A group that joined while its topics were missing (a broker back empty) gets no
        # partitions and aiokafka waits for metadata that may take long to change: restart.
        if consumer.assignment():
            self._unassigned_since = None
            return
        now = time.monotonic()
        if self._unassigned_since is None:
            self._unassigned_since = now
        elif now - self._unassigned_since > grace:
            missing = [t for t in self._topics if not consumer.partitions_for_topic(t)]
            if missing:
                self._unassigned_since = None
                raise TopicsMissing(f"subscribed topics missing: {', '.join(missing)}")

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if offsets:
            # aiokafka retries a commit while the group coordinator moves, without end.
            async with asyncio.timeout(self.call_timeout):
                await self._require().commit(
                    {KafkaTopicPartition(tp.topic, tp.partition): o for tp, o in offsets.items()}
                )

    async def seek_back(self, tp: TopicPartition, offset: int) -> None:
        """Re-read from ``offset`` (after a failed batch whose offsets were not committed)."""
        self._require().seek(KafkaTopicPartition(tp.topic, tp.partition), offset)

    async def lag(self) -> dict[TopicPartition, int]:
        consumer = self._require()
        result: dict[TopicPartition, int] = {}
        for tp in consumer.assignment():
            high = consumer.highwater(tp)
            if high is None:
                continue
            try:
                async with asyncio.timeout(self.call_timeout):
                    position = await consumer.position(tp)
            except (KafkaError, TimeoutError):
                continue
            result[TopicPartition(tp.topic, tp.partition)] = max(high - position, 0)
        return result


class KafkaLogInspector:
    """Reads partition bounds and the event ids at given offsets, outside any consumer group."""

    def __init__(self, bootstrap_servers: str, *, call_timeout: float = 15.0) -> None:
        self._bootstrap = bootstrap_servers
        self.call_timeout = call_timeout
        self._consumer: AIOKafkaConsumer | None = None

    async def _require(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self._bootstrap,
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                request_timeout_ms=int(self.call_timeout * 1000),
                fetch_max_wait_ms=100,
            )
            try:
                async with asyncio.timeout(self.call_timeout):
                    await consumer.start()
            except BaseException:
                await _stop_quietly(consumer.stop())
                raise
            self._consumer = consumer
        return self._consumer

    async def partition_counts(self, topics: Iterable[str]) -> dict[str, int]:
        consumer = await self._require()
        try:
            async with asyncio.timeout(self.call_timeout):
                cluster = await consumer._client.fetch_all_metadata()
        except BaseException:
            await self.close()
            raise
        counts: dict[str, int] = {}
        for topic in topics:
            found = cluster.partitions_for_topic(topic)
            if found is not None:
                counts[topic] = len(found)
        return counts

    async def bounds(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, LogBounds]:
        tps = [KafkaTopicPartition(tp.topic, tp.partition) for tp in partitions]
        if not tps:
            return {}
        consumer = await self._require()
        try:
            async with asyncio.timeout(self.call_timeout):
                starts = await consumer.beginning_offsets(tps)
                reported = await consumer.end_offsets(tps)
                ends = await self._high_watermarks(consumer, starts, reported)
        except BaseException:
            await self.close()
            raise
        _release(consumer)
        return {
            TopicPartition(tp.topic, tp.partition): LogBounds(starts[tp], ends[tp]) for tp in tps
        }

    async def _high_watermarks(
        self,
        consumer: AIOKafkaConsumer,
        starts: dict[KafkaTopicPartition, int],
        reported: dict[KafkaTopicPartition, int],
    ) -> dict[KafkaTopicPartition, int]:
        # The high watermark of a fetch response is the log's end. ListOffsets is not trusted
        # alone: Tansu answers the base offset of the last batch plus one, short of the end.
        consumer.assign(list(reported))
        for tp, end in reported.items():
            consumer.seek(tp, max(end - 1, starts[tp]))
        ends: dict[KafkaTopicPartition, int] = {}
        for _ in range(4):
            await consumer.getmany(timeout_ms=250, max_records=1)
            for tp in reported:
                high = consumer.highwater(tp)
                if high is not None:
                    ends[tp] = max(high, reported[tp])
            if len(ends) == len(reported):
                break
        return {tp: ends.get(tp, reported[tp]) for tp in reported}

    async def event_ids(self, tp: TopicPartition, start: int, end: int) -> dict[int, str]:
        found: dict[int, str] = {}
        if end <= start:
            return found
        consumer = await self._require()
        ktp = KafkaTopicPartition(tp.topic, tp.partition)
        try:
            async with asyncio.timeout(self.call_timeout + (end - start) / 1000):
                consumer.assign([ktp])
                consumer.seek(ktp, start)
                position, idle = start, 0
                while position < end and idle < 3:
                    batch = await consumer.getmany(ktp, timeout_ms=500, max_records=1000)
                    idle = 0 if batch else idle + 1
                    for record in batch.get(ktp, []):
                        position = record.offset + 1
                        if record.offset >= end:
                            break
                        for key, value in record.headers:
                            if key == "event_id":
                                found[record.offset] = value.decode()
        except BaseException:
            await self.close()
            raise
        _release(consumer)
        return found

    async def ensure_topics(self, topics: Iterable[str], partitions: int) -> None:
        await ensure_topics(self._bootstrap, topics, partitions)

    async def close(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await _stop_quietly(consumer.stop())


def _release(consumer: AIOKafkaConsumer) -> None:
    """Drop a log inspector's partitions once read: aiokafka keeps fetching assigned partitions
    in the background, which between two audits would be a fetch request every wait, for
    nothing."""
    consumer.unsubscribe()


async def _stop_quietly(stopping: object, timeout: float = 5.0) -> None:
    """Stop an aiokafka client within ``timeout``; a client that lost its broker may not."""
    try:
        await asyncio.wait_for(stopping, timeout)  # type: ignore[arg-type]
    except (KafkaError, OSError, TimeoutError):
        log.debug("aiokafka client stop failed", exc_info=True)


def _reason(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def ensure_topics(
    bootstrap_servers: str, topics: Iterable[str], partitions: int, *, timeout: float = 15.0
) -> None:
    """Create the topics that do not exist yet (idempotent; several services race safely)."""
    wanted = sorted(set(topics))
    if not wanted:
        return
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers, request_timeout_ms=int(timeout * 1000)
    )
    try:
        async with asyncio.timeout(timeout):
            await admin.start()
            existing = set(await admin.list_topics())
            missing = [t for t in wanted if t not in existing]
            if not missing:
                return
            response = await admin.create_topics(
                [NewTopic(t, num_partitions=partitions, replication_factor=1) for t in missing]
            )
    finally:
        await _stop_quietly(admin.close())
    for topic, code, message in _topic_errors(response):
        # 36 = TOPIC_ALREADY_EXISTS: another service created it in the meantime.
        if code not in (0, TopicAlreadyExistsError.errno):
            raise KafkaError(f"cannot create topic {topic}: {code} {message}")
    log.info("created topics %s", ", ".join(missing))


def _topic_errors(response: object) -> list[tuple[str, int, str | None]]:
    errors = getattr(response, "topic_errors", [])
    out: list[tuple[str, int, str | None]] = []
    for entry in errors:
        topic, code = entry[0], entry[1]
        message = entry[2] if len(entry) > 2 else None
        out.append((str(topic), int(code), message))
    return out
