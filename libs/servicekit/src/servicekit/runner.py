"""Running a service process: create its database if needed, migrate it, serve HTTP."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from servicekit.db import ensure_database
from servicekit.migrations import upgrade
from servicekit.settings import ServiceSettings, UnsafeSettingsError
from servicekit.telemetry.logging import setup_logging

log = logging.getLogger(__name__)


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
    uvicorn.run(
        app_factory(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
    )
