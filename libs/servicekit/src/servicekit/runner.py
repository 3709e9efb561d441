"""Running a service process: create its database if needed, migrate it, serve HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType

import uvicorn
from fastapi import FastAPI

from servicekit.db import ensure_database
from servicekit.migrations import upgrade
from servicekit.settings import ServiceSettings, UnsafeSettingsError
from servicekit.telemetry.logging import setup_logging

log = logging.getLogger(__name__)


class QuietServer(uvicorn.Server):
    """uvicorn's server with a main loop that ticks once a second instead of ten times.

    The tick refreshes the ``Date`` header (once a second either way) and notices a shutdown
    request; ten wake-ups a second of every idle service are a tenth of what the whole stack
    may spend at rest. A signal still ends the wait at once."""

    _exit_requested: asyncio.Event | None = None
    _loop: asyncio.AbstractEventLoop | None = None

    async def main_loop(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._exit_requested = asyncio.Event()
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            # on_tick refreshes the headers when the counter is a multiple of ten.
            counter = (counter + 10) % 864000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._exit_requested.wait(), 1.0)
            should_exit = await self.on_tick(counter)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        if self._loop is not None and self._exit_requested is not None:
            self._loop.call_soon_threadsafe(self._exit_requested.set)


def serve(config: uvicorn.Config) -> None:
    """``uvicorn.run`` for one process without reload, on :class:`QuietServer`."""
    config.load_app()
    server = QuietServer(config=config)
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    if not server.started:
        sys.exit(3)  # uvicorn's exit code for a server that failed to start


def main(
    settings: ServiceSettings,
    app_factory: Callable[[ServiceSettings], FastAPI],
    migrations_dir: Path,
    argv: list[str] | None = None,
) -> None:
    """``python -m <service> [serve|migrate]``: ``serve`` (default) migrates, then serves."""
    args = sys.argv[1:] if argv is None else argv
    command = args[0] if args else "serve"
    setup_logging(settings.service_name, settings.log_level, settings.log_format)
    if command not in ("serve", "migrate"):
        raise SystemExit(f"usage: python -m {settings.service_name} [serve|migrate]")
    if command == "serve":
        try:
            settings.check_production()
        except UnsafeSettingsError as unsafe:
            raise SystemExit(str(unsafe)) from None
    asyncio.run(ensure_database(settings.sqlalchemy_url))
    upgrade(migrations_dir, settings.sqlalchemy_url)
    log.info("%s database migrated", settings.service_name)
    if command == "migrate":
        return
    serve(
        uvicorn.Config(
            app_factory(settings),
            host=settings.host,
            port=settings.port,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=10,
        )
    )
