"""The pool never hands out a connection the server closed, and checks without a round trip
a connection used a moment ago."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_connection

from servicekit.db import Database
from servicekit.testing.wait import eventually


async def _backend_and_driver(database: Database) -> tuple[int, Any]:
    async with database.transaction() as session:
        pid = await session.scalar(sa.text("SELECT pg_backend_pid()"))
        raw = await (await session.connection()).get_raw_connection()
        assert pid is not None
        return int(pid), raw.driver_connection


async def _terminate(database: Database, pid: int) -> None:
    admin = await asyncpg.connect(database.raw_dsn())
    try:
        await admin.execute("SELECT pg_terminate_backend($1)", pid)

        async def gone() -> bool:
            still = await admin.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid
            )
            return still == 0

        await eventually(gone)
    finally:
        await admin.close()


async def test_a_connection_the_server_closed_is_replaced(create_database: Any) -> None:
    database = Database(await create_database("pool_closed"), pool_size=1, max_overflow=0)
    try:
        pid, driver = await _backend_and_driver(database)
        await _terminate(database, pid)

        async def noticed() -> bool:
            return bool(driver.is_closed())

        await eventually(noticed)
        again, _ = await _backend_and_driver(database)
        assert again != pid
    finally:
        await database.dispose()


async def test_a_connection_idle_for_long_is_pinged_before_use(
    create_database: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every pooled connection counts as idle for long here: a dropped network may leave its
    # socket looking open, so only a round trip tells.
    database = Database(
        await create_database("pool_idle"), pool_size=1, max_overflow=0, idle_ping_seconds=0
    )
    pings: list[object] = []
    ping = AsyncAdapt_asyncpg_connection.ping

    def failing_ping(self: Any) -> None:
        pings.append(self)
        ping(self)
        if len(pings) == 1:
            raise ConnectionResetError("the network dropped it")

    monkeypatch.setattr(AsyncAdapt_asyncpg_connection, "ping", failing_ping)
    try:
        pid, _ = await _backend_and_driver(database)
        assert pings == []  # a new connection is not pinged
        again, _ = await _backend_and_driver(database)
        assert len(pings) == 1
        assert again != pid  # the connection that failed its ping was replaced
    finally:
        await database.dispose()


async def test_a_connection_in_use_a_moment_ago_costs_no_round_trip(
    create_database: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = Database(await create_database("pool_busy"), pool_size=1, max_overflow=0)
    pings: list[object] = []
    ping = AsyncAdapt_asyncpg_connection.ping

    def counting_ping(self: Any) -> None:
        pings.append(self)
        ping(self)

    monkeypatch.setattr(AsyncAdapt_asyncpg_connection, "ping", counting_ping)
    try:
        for _ in range(3):
            async with database.transaction() as session:
                assert await session.scalar(sa.text("SELECT 1")) == 1
        assert pings == []
    finally:
        await database.dispose()
