"""The Kafka transport (aiokafka).

Correctness never relies on idempotent producers or transactions (the local broker, Tansu,
has neither): the producer is at-least-once and consumers deduplicate by event id.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from aiokafka.structs import TopicPartition as KafkaTopicPartition

from servicekit.bus.base import BusMessage, OutgoingMessage, PublishError, TopicPartition

log = logging.getLogger(__name__)


class KafkaPublisher:
    def __init__(
        self,
        bootstrap_servers: str,
        *,
        client_id: str = "countertop",
        publish_timeout: float = 15.0,
    ) -> None:
        # aiokafka can wait for metadata of an unreachable broker indefinitely: bound it.
        self.publish_timeout = publish_timeout
        self._bootstrap = bootstrap_servers
        self._client_id = client_id
        self._producer: AIOKafkaProducer | None = None

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

    async def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        producer = await self._ensure_started()
        try:
            async with asyncio.timeout(self.publish_timeout):
                futures = [
                    await producer.send(m.topic, value=m.value, key=m.key, headers=list(m.headers))
                    for m in messages
                ]
                await asyncio.gather(*futures)
        except (KafkaError, OSError, TimeoutError) as exc:
            # A producer that lost the broker can stay wedged; start afresh next time.
            await self._reset()
            raise PublishError(str(exc) or type(exc).__name__) from exc

    async def _reset(self) -> None:
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
        heartbeat_interval_ms: int = 1_000,
        rebalance_timeout_ms: int = 5_000,
        fetch_max_wait_ms: int = 50,
    ) -> None:
        # How long the broker may hold a fetch waiting for data. aiokafka's 500 ms default is
        # what an event waits when traffic is light; 50 ms keeps checkout effects prompt.
        self._fetch_max_wait_ms = fetch_max_wait_ms
        self._timeouts = {
            "session_timeout_ms": session_timeout_ms,
            "heartbeat_interval_ms": heartbeat_interval_ms,
            "rebalance_timeout_ms": rebalance_timeout_ms,
        }
        self._bootstrap = bootstrap_servers
        self._group_id = group_id
        self._topics = sorted(set(topics))
        self._client_id = client_id
        self._consumer: AIOKafkaConsumer | None = None

    @property
    def group_id(self) -> str:
        return self._group_id

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(
            *self._topics,
            bootstrap_servers=self._bootstrap,
            group_id=self._group_id,
            client_id=self._client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_uncommitted",
            max_poll_interval_ms=300_000,
            fetch_max_wait_ms=self._fetch_max_wait_ms,
            **self._timeouts,
        )
        try:
            await consumer.start()
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer

    async def stop(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await consumer.stop()

    def _require(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError("consumer not started")
        return self._consumer

    async def fetch(
        self, timeout_ms: int, max_records: int
    ) -> dict[TopicPartition, list[BusMessage]]:
        batch = await self._require().getmany(timeout_ms=timeout_ms, max_records=max_records)
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

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if offsets:
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
                position = await consumer.position(tp)
            except KafkaError:
                continue
            result[TopicPartition(tp.topic, tp.partition)] = max(high - position, 0)
        return result


async def ensure_topics(bootstrap_servers: str, topics: Iterable[str], partitions: int) -> None:
    """Create the topics that do not exist yet (idempotent; several services race safely)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in sorted(set(topics)) if t not in existing]
        if not missing:
            return
        response = await admin.create_topics(
            [NewTopic(t, num_partitions=partitions, replication_factor=1) for t in missing]
        )
        for topic, code, message in _topic_errors(response):
            # 36 = TOPIC_ALREADY_EXISTS: another service created it in the meantime.
            if code not in (0, TopicAlreadyExistsError.errno):
                raise KafkaError(f"cannot create topic {topic}: {code} {message}")
        log.info("created topics %s", ", ".join(missing))
    finally:
        await admin.close()


def _topic_errors(response: object) -> list[tuple[str, int, str | None]]:
    errors = getattr(response, "topic_errors", [])
    out: list[tuple[str, int, str | None]] = []
    for entry in errors:
        topic, code = entry[0], entry[1]
        message = entry[2] if len(entry) > 2 else None
        out.append((str(topic), int(code), message))
    return out
