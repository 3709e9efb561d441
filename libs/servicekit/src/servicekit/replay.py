"""Re-publish a window of a service's outbox by hand, and re-arm parked rows.

    python -m servicekit.replay --service orders --since 2026-11-26T10:00Z
    python -m servicekit.replay --service orders --since 2026-11-26T10:00Z \\
        --until 2026-11-26T11:00Z --topic orders.order
    python -m servicekit.replay --service payments --unpark

Rows sent in the window are marked unsent again (the running relay publishes them once more,
in ``seq`` order, under their original event ids; consumers drop what they had applied), and
with ``--unpark`` parked rows are re-armed with their attempts reset. Nothing is published by
this command itself: it only changes rows and wakes the relays, so it is safe to run while the
service runs, and running it twice only publishes twice.

The service's database is ``--database-url``, else ``<SERVICE>_DATABASE_URL``, else the database
``countertop_<service>`` on ``POSTGRES_URL`` (as the service itself resolves it).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from servicekit.db import Database
from servicekit.schema import OUTBOX_CHANNEL
from servicekit.settings import PlatformSettings

_REARM_SENT = sa.text(
    "UPDATE outbox SET sent_at = NULL, kafka_partition = NULL, kafka_offset = NULL, "
    "last_error = 'replayed by an operator' "
    "WHERE sent_at IS NOT NULL AND sent_at >= :since "
    "AND (CAST(:until AS timestamptz) IS NULL OR sent_at < :until) "
    "AND (cardinality(CAST(:topics AS text[])) = 0 OR topic = ANY(:topics))"
)

_UNPARK = sa.text(
    "UPDATE outbox SET parked_at = NULL, attempts = 0 "
    "WHERE parked_at IS NOT NULL "
    "AND (cardinality(CAST(:topics AS text[])) = 0 OR topic = ANY(:topics))"
)

_NOTIFY = sa.text(f"SELECT pg_notify('{OUTBOX_CHANNEL}', '')")


@dataclass(frozen=True, slots=True)
class ReplayResult:
    rearmed: int
    unparked: int


async def replay(
    database: Database,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    topics: Sequence[str] = (),
    unpark: bool = False,
) -> ReplayResult:
    """Mark the rows sent in ``[since, until)`` unsent (and, with ``unpark``, re-arm the
    parked rows), limited to ``topics`` when given; wake the relays."""
    rearmed = unparked = 0
    async with database.transaction() as session:
        if since is not None:
            result = await session.execute(
                _REARM_SENT, {"since": since, "until": until, "topics": list(topics)}
            )
            rearmed = int(getattr(result, "rowcount", 0) or 0)
        if unpark:
            result = await session.execute(_UNPARK, {"topics": list(topics)})
            unparked = int(getattr(result, "rowcount", 0) or 0)
        await session.execute(_NOTIFY)
    return ReplayResult(rearmed, unparked)


def database_url(service: str, explicit: str | None = None) -> str:
    """The asyncpg URL of ``service``'s database, resolved as the service resolves it."""
    prefix = service.upper().replace("-", "_")
    chosen = explicit or os.environ.get(f"{prefix}_DATABASE_URL")
    if chosen:
        url = make_url(chosen)
    else:
        url = make_url(PlatformSettings().postgres_url).set(
            database="countertop_" + service.replace("-", "_")
        )
    return url.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


def _timestamp(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r}: give a time zone (e.g. 2026-11-26T10:00Z)")
    return value.astimezone(UTC)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m servicekit.replay",
        description="Re-publish a window of a service's outbox; re-arm parked rows.",
    )
    parser.add_argument("--service", required=True, help="e.g. orders")
    parser.add_argument("--since", type=_timestamp, help="re-publish rows sent from this time")
    parser.add_argument("--until", type=_timestamp, help="... and before this time")
    parser.add_argument("--topic", action="append", default=[], help="only this topic (repeatable)")
    parser.add_argument("--unpark", action="store_true", help="re-arm parked rows too")
    parser.add_argument("--database-url", help="the service's database (default: see above)")
    return parser


async def _main(args: argparse.Namespace) -> ReplayResult:
    database = Database(database_url(args.service, args.database_url), pool_size=1)
    try:
        return await replay(
            database, since=args.since, until=args.until, topics=args.topic, unpark=args.unpark
        )
    finally:
        await database.dispose()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.since is None and not args.unpark:
        _parser().error("give --since (a window to re-publish), --unpark, or both")
    result = asyncio.run(_main(args))
    print(f"{args.service}: {result.rearmed} sent row(s) re-armed, {result.unparked} unparked")
    return 0


if __name__ == "__main__":
    sys.exit(main())
