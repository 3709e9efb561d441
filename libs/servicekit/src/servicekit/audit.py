"""The log auditor: notices a broker log that lost what it acknowledged, and re-arms it.

An event marked sent is not an event delivered: the embedded broker keeps its log in memory (a
restart empties it), and a Kafka cluster can lose a partition's tail (unclean leader election)
or a whole topic (deleted by mistake). The relay records where the broker acknowledged each row
(``kafka_partition``, ``kafka_offset``); every ``interval`` the auditor compares that with the
broker, for every partition that holds recorded rows:

* the topic is gone, or has fewer partitions than the rows name: everything recorded there is
  lost (the topic is created again first, with the configured partitions);
* the log ends at or before the highest recorded offset (a log is never shorter than what it
  acknowledged), or two rows recorded the same offset (a log that started over reuses offsets),
  or the message at the highest recorded offset is not the recorded event (a log that started
  over and grew back): the partition is read back and every recorded row whose offset does not
  hold its event is lost.

Lost rows are re-armed (``sent_at`` and the offsets cleared), so the relay publishes them again
in ``seq`` order through its normal path; consumers drop what they had already applied (inbox).
One auditor runs at a time per database (an advisory lock), so replicas do not audit twice.
The start of the last audit that found the log clean bounds pruning: a row sent after it is
never pruned (``OutboxRelay.audited_before``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from servicekit.bus.base import LogBounds, LogInspector, TopicPartition
from servicekit.db import Database
from servicekit.schema import OUTBOX_LOCK_NAMESPACE
from servicekit.telemetry import metrics

log = logging.getLogger(__name__)

#: Second key of the auditor's advisory lock (the lanes use 0 .. OUTBOX_LANES - 1).
_AUDIT_LOCK_KEY = -1

_LOCK = sa.text("SELECT pg_try_advisory_xact_lock(:ns, :key)").bindparams(
    ns=OUTBOX_LOCK_NAMESPACE, key=_AUDIT_LOCK_KEY
)

# The partitions that hold recorded rows and the highest offset recorded in each: a loose
# index scan over ix_outbox_delivered, a few index probes per partition whatever the table size.
_MARKS = sa.text(
    """
    WITH RECURSIVE parts AS (
        (SELECT topic, kafka_partition FROM outbox WHERE kafka_offset IS NOT NULL
         ORDER BY topic, kafka_partition LIMIT 1)
        UNION ALL
        SELECT n.topic, n.kafka_partition FROM parts AS p, LATERAL (
            SELECT topic, kafka_partition FROM outbox
            WHERE kafka_offset IS NOT NULL
              AND (topic, kafka_partition) > (p.topic, p.kafka_partition)
            ORDER BY topic, kafka_partition LIMIT 1
        ) AS n
    )
    SELECT p.topic, p.kafka_partition, m.kafka_offset, m.ids
    FROM parts AS p, LATERAL (
        SELECT o.kafka_offset, array_agg(o.id) AS ids FROM outbox AS o
        WHERE o.topic = p.topic AND o.kafka_partition = p.kafka_partition
          AND o.kafka_offset = (
              SELECT max(kafka_offset) FROM outbox
              WHERE topic = p.topic AND kafka_partition = p.kafka_partition
                AND kafka_offset IS NOT NULL)
        GROUP BY o.kafka_offset
    ) AS m
    """
)

# Partitions where two rows sent recently recorded the same offset.
_COLLISIONS = sa.text(
    "SELECT DISTINCT n.topic, n.kafka_partition FROM outbox AS n JOIN outbox AS o "
    "ON o.topic = n.topic AND o.kafka_partition = n.kafka_partition "
    "AND o.kafka_offset = n.kafka_offset AND o.id <> n.id "
    "WHERE n.sent_at >= :since AND n.kafka_offset IS NOT NULL"
)

_RECORDED = sa.text(
    "SELECT id, kafka_partition, kafka_offset FROM outbox "
    "WHERE topic = :topic AND kafka_offset IS NOT NULL "
    "AND (CAST(:partition AS integer) IS NULL OR kafka_partition = :partition)"
)

# Re-arm only rows still recorded where the audit saw them: one re-sent meanwhile is left be.
_REARM = sa.text(
    "UPDATE outbox AS o SET sent_at = NULL, kafka_partition = NULL, kafka_offset = NULL, "
    "last_error = :reason "
    "FROM unnest(CAST(:ids AS uuid[]), CAST(:offsets AS bigint[])) AS d(id, kafka_offset) "
    "WHERE o.id = d.id AND o.kafka_offset = d.kafka_offset AND o.sent_at IS NOT NULL"
)

_NOTIFY = sa.text("SELECT pg_notify('outbox_event', '')")


@dataclass
class AuditReport:
    """What one audit found: the rows it re-armed, by topic, and why, by partition."""

    ran: bool = False
    rearmed: dict[str, int] = field(default_factory=dict)
    reasons: dict[TopicPartition, str] = field(default_factory=dict)
    #: Nothing was recorded sent since the audit before.
    unchanged: bool = False

    @property
    def clean(self) -> bool:
        return self.ran and not self.rearmed


class LogAuditor:
    def __init__(
        self,
        database: Database,
        inspector: LogInspector,
        *,
        service: str,
        partitions: int,
        interval: float = 5.0,
        idle_interval: float | None = None,
        on_rearmed: Callable[[], None] | None = None,
    ) -> None:
        self.database = database
        self.inspector = inspector
        self.service = service
        self.partitions = partitions
        self.interval = interval
        # While nothing is sent the wait between audits doubles up to this: an idle service
        # stops asking the broker and its database every few seconds. A log lost meanwhile is
        # found that much later, and still re-published.
        self.idle_interval = max(interval, idle_interval if idle_interval is not None else interval)
        self._quiet_audits = 0
        self._marks_seen: dict[TopicPartition, int] | None = None
        self.on_rearmed = on_rearmed
        #: Start of the last audit that found nothing lost (database time); None before one.
        self.last_clean_start: datetime | None = None
        self._last_start: datetime | None = None
        # Highest offset found intact per partition: no need to read it again.
        self._verified: dict[TopicPartition, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"{self.service}-log-auditor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            await self.inspector.close()

    def wake(self) -> None:
        """Audit now (e.g. the relay just got the broker back)."""
        self._wake.set()

    def audited_before(self) -> datetime | None:
        return self.last_clean_start

    def note(self, report: AuditReport) -> None:
        """Count a clean audit that found nothing new sent; anything else starts over."""
        if report.clean and report.unchanged:
            self._quiet_audits += 1
        elif report.ran:
            self._quiet_audits = 0

    def next_wait(self) -> float:
        backoff: float = self.interval * 2.0 ** min(self._quiet_audits, 16)
        return min(self.idle_interval, backoff)

    async def _run(self) -> None:
        while True:
            try:
                report = await self.audit_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._quiet_audits = 0
                metrics.outbox_log_audits_total.labels(self.service, "failed").inc()
                log.warning("outbox log audit failed: %s", exc)
            else:
                self.note(report)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.next_wait())
            self._wake.clear()

    # -- one audit -------------------------------------------------------------------------
    async def audit_once(self) -> AuditReport:
        report = AuditReport()
        async with self.database.engine.connect() as conn, conn.begin():
            if not (await conn.execute(_LOCK)).scalar_one():
                return report  # another replica is auditing
            started: datetime = (await conn.execute(sa.text("SELECT now()"))).scalar_one()
            # Rows recorded before this point are the ones judged; the broker is asked after.
            marks = {
                TopicPartition(r.topic, r.kafka_partition): (int(r.kafka_offset), list(r.ids))
                for r in await conn.execute(_MARKS)
            }
            since = (self._last_start or started - timedelta(hours=1)) - timedelta(minutes=1)
            collided = {
                TopicPartition(r.topic, r.kafka_partition)
                for r in await conn.execute(_COLLISIONS, {"since": since})
            }
            report.ran = True
            offsets = {tp: offset for tp, (offset, _) in marks.items()}
            report.unchanged = offsets == self._marks_seen
            self._marks_seen = offsets
            if marks:
                await self._judge(conn, marks, collided, report)
            if report.rearmed:
                await conn.execute(_NOTIFY)
        self._last_start = started
        if report.clean:
            self.last_clean_start = started
            metrics.outbox_log_audits_total.labels(self.service, "clean").inc()
        elif report.rearmed:
            metrics.outbox_log_audits_total.labels(self.service, "loss").inc()
            for topic, count in report.rearmed.items():
                metrics.outbox_republished_total.labels(self.service, topic).inc(count)
            log.error(
                "the broker lost events it had acknowledged; re-publishing %s (%s)",
                dict(report.rearmed),
                {f"{tp.topic}/{tp.partition}": why for tp, why in report.reasons.items()},
            )
            if self.on_rearmed is not None:
                self.on_rearmed()
        return report

    async def _judge(
        self,
        conn: AsyncConnection,
        marks: dict[TopicPartition, tuple[int, list[uuid.UUID]]],
        collided: set[TopicPartition],
        report: AuditReport,
    ) -> None:
        topics = sorted({tp.topic for tp in marks})
        counts = await self.inspector.partition_counts(topics)
        lost_topics = {t for t in topics if t not in counts}
        if lost_topics:
            await self.inspector.ensure_topics(lost_topics, self.partitions)
        present = [tp for tp in marks if tp.topic in counts and tp.partition < counts[tp.topic]]
        bounds = await self.inspector.bounds(present)
        for tp, (highest, ids_there) in sorted(marks.items()):
            if tp.topic in lost_topics:
                report.reasons[tp] = "topic missing"
                continue
            if tp not in bounds:
                report.reasons[tp] = "partition missing"
                continue
            log_end = bounds[tp].end
            if log_end <= highest:
                report.reasons[tp] = f"log ends at {log_end}, offset {highest} was acknowledged"
            elif tp in collided:
                report.reasons[tp] = "an offset was acknowledged twice"
            elif self._verified.get(tp) != highest:
                found = await self.inspector.event_ids(tp, highest, highest + 1)
                if any(found.get(highest) != str(i) for i in ids_there):
                    report.reasons[tp] = f"offset {highest} holds another event"
                else:
                    self._verified[tp] = highest
        by_topic: dict[str, list[TopicPartition]] = defaultdict(list)
        for tp in report.reasons:
            by_topic[tp.topic].append(tp)
        for topic, tps in by_topic.items():
            if topic in lost_topics:
                recorded = await self._recorded(conn, topic, None)
                lost = [(row_id, offset) for row_id, _, offset in recorded]
            else:
                lost = []
                for tp in tps:
                    self._verified.pop(tp, None)
                    lost += await self._lost_in(conn, tp, bounds.get(tp))
            if lost:
                reason = "re-published: the broker's log lost it ({})".format(
                    "; ".join(report.reasons[tp] for tp in tps)
                )[:2000]
                await conn.execute(
                    _REARM,
                    {
                        "ids": [row_id for row_id, _ in lost],
                        "offsets": [offset for _, offset in lost],
                        "reason": reason,
                    },
                )
                report.rearmed[topic] = report.rearmed.get(topic, 0) + len(lost)

    async def _recorded(
        self, conn: AsyncConnection, topic: str, partition: int | None
    ) -> list[tuple[uuid.UUID, int, int]]:
        rows = await conn.execute(_RECORDED, {"topic": topic, "partition": partition})
        return [(r.id, int(r.kafka_partition), int(r.kafka_offset)) for r in rows]

    async def _lost_in(
        self, conn: AsyncConnection, tp: TopicPartition, bounds: LogBounds | None
    ) -> list[tuple[uuid.UUID, int]]:
        """The rows recorded on ``tp`` whose offset does not hold their event any more."""
        recorded = await self._recorded(conn, tp.topic, tp.partition)
        if bounds is None:  # the partition itself is gone
            return [(row_id, offset) for row_id, _, offset in recorded]
        start = bounds.start
        # Offsets below the log's start were removed by the broker's own retention, not lost.
        judged = [(row_id, offset) for row_id, _, offset in recorded if offset >= start]
        if not judged:
            return []
        first = min(offset for _, offset in judged)
        last = max(offset for _, offset in judged)
        found = await self.inspector.event_ids(tp, first, last + 1)
        return [(row_id, offset) for row_id, offset in judged if found.get(offset) != str(row_id)]
