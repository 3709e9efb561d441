"""Waking background workers on PostgreSQL ``NOTIFY``: one LISTEN connection, reconnected
with backoff; the workers poll as well, so a lost notification only delays them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping

import asyncpg

from servicekit.db import Database

log = logging.getLogger(__name__)


async def listen_forever(database: Database, channels: Mapping[str, Callable[[], None]]) -> None:
    backoff = 0.5
    while True:
        conn: asyncpg.Connection | None = None
        try:
            conn = await asyncpg.connect(database.raw_dsn())
            closed = asyncio.Event()
            conn.add_termination_listener(lambda _conn, closed=closed: closed.set())
            for channel, wake in channels.items():
                await conn.add_listener(channel, lambda *_, wake=wake: wake())
                wake()  # something may have arrived while nobody listened
            backoff = 0.5
            await closed.wait()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("LISTEN connection failed: %s", exc)
        finally:
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close()
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, 10.0)
