"""Database access: one async engine per service, one transaction per unit of work.

Routers never commit: a request gets a session inside a transaction that commits when the
handler returns and rolls back when it raises. Repositories and services take that session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

import asyncpg
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase

log = logging.getLogger(__name__)


#: A pooled connection unused for longer than this is pinged (a round trip) before it is
#: handed out again; one in use more recently is only checked for a closed socket.
IDLE_PING_SECONDS: Final = 10.0
_RETURNED_AT: Final = "countertop.returned_at"


def _check_on_checkout(engine: AsyncEngine, idle_ping_seconds: float) -> None:
    """Never hand out a dead connection, without a round trip per checkout.

    SQLAlchemy's ``pool_pre_ping`` with asyncpg costs three round trips on every checkout
    (``BEGIN``, ``;``, ``ROLLBACK``): a third of all statements of a checkout. A connection
    the server closed (a restart, ``pg_terminate_backend``, an idle timeout) is known to
    asyncpg as soon as the event loop has seen the socket close, so a closed socket is
    checked every time; the full ping runs only for a connection that sat in the pool long
    enough for the network to have dropped it silently. A failed check raises
    ``DisconnectionError``: the pool discards the connection and opens a new one, and the
    request never sees it.
    """
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "checkin")
    def _returned(dbapi_connection: Any, record: Any) -> None:
        record.info[_RETURNED_AT] = time.monotonic()

    @event.listens_for(sync_engine, "checkout")
    def _check(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        driver = getattr(dbapi_connection, "driver_connection", None)
        if driver is not None and driver.is_closed():
            raise DisconnectionError("the server closed this connection")
        returned = record.info.get(_RETURNED_AT)
        if returned is None or time.monotonic() - returned <= idle_ping_seconds:
            return  # new, or in use a moment ago
        try:
            dbapi_connection.ping()
        except Exception as exc:
            raise DisconnectionError(f"the pooled connection is dead: {exc}") from exc


class Database:
    """The engine and session factory of one service's database."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        max_overflow: int | None = None,
        idle_ping_seconds: float = IDLE_PING_SECONDS,
        echo: bool = False,
    ) -> None:
        self.url = url
        self.engine: AsyncEngine = create_async_engine(
            url,
            pool_size=pool_size,
            # An overflow connection is closed when it is returned and opened again at the next
            # peak: a new PostgreSQL backend, a new TLS context, statements prepared again. The
            # pool is sized for the steady load, the overflow only for bursts.
            max_overflow=pool_size if max_overflow is None else max_overflow,
            # The connection returned last is taken first: while traffic is light the same few
            # connections serve it, stay within the idle ping's window and skip the ping (three
            # statements); the others rest.
            pool_use_lifo=True,
            echo=echo,
        )
        _check_on_checkout(self.engine, idle_ping_seconds)
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction: committed on normal exit, rolled back on error."""
        async with self.sessionmaker() as session, session.begin():
            yield session

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.exec_driver_sql("SELECT 1")

    async def dispose(self) -> None:
        await self.engine.dispose()

    def raw_dsn(self) -> str:
        """The URL in libpq form, for asyncpg connections SQLAlchemy does not manage (LISTEN)."""
        return make_url(self.url).set(drivername="postgresql").render_as_string(hide_password=False)


class Base(DeclarativeBase):
    """Declarative base for servicekit's own tables in tests; services define their own."""


async def ensure_database(url: str, *, attempts: int = 60, delay: float = 0.5) -> None:
    """Create the database named in ``url`` when it does not exist yet.

    Waits for the server to accept connections first, so a service started together with its
    database server (the local stack, a Kubernetes pod) does not fail on a race.
    """
    target = make_url(url)
    name = target.database
    if not name:
        raise ValueError("database URL names no database")
    admin = target.set(drivername="postgresql", database="postgres").render_as_string(
        hide_password=False
    )
    last_error: Exception | None = None
    for _ in range(attempts):
        try:
            conn = await asyncpg.connect(admin, timeout=5)
        except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
            last_error = exc
            await asyncio.sleep(delay)
            continue
        try:
            exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
            if not exists:
                # Another replica may create it between the check and here: that is fine.
                with contextlib.suppress(asyncpg.DuplicateDatabaseError):
                    await conn.execute(f'CREATE DATABASE "{name}"')
                    log.info("created database %s", name)
            return
        finally:
            await conn.close()
    raise ConnectionError(f"PostgreSQL not reachable for {name}: {last_error}")


async def drop_database(url: str) -> None:
    """Drop the database named in ``url`` (tests), disconnecting its remaining sessions."""
    target = make_url(url)
    admin = target.set(drivername="postgresql", database="postgres").render_as_string(
        hide_password=False
    )
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)')
    finally:
        await conn.close()
