"""``python -m identity [serve|migrate|rotate-keys]``.

``rotate-keys`` is the operators' key rotation: a new signing key becomes active at once on
every replica within ``IDENTITY_KEY_CACHE_SECONDS``, the old one stays published until the
tokens it signed have expired.
"""

import asyncio
import sys
from pathlib import Path

from identity.config import Settings
from identity.main import create_app, key_store
from servicekit.db import Database, ensure_database
from servicekit.migrations import upgrade
from servicekit.runner import main
from servicekit.telemetry.logging import setup_logging

MIGRATIONS = Path(__file__).parent / "migrations"


async def rotate_keys(settings: Settings) -> str:
    keys = key_store(settings)
    database = Database(settings.sqlalchemy_url, pool_size=1)
    try:
        keys.bind(database)
        return await keys.rotate()
    finally:
        await database.dispose()


def run(argv: list[str]) -> None:
    settings = Settings()
    if argv[:1] == ["rotate-keys"]:
        setup_logging(settings.service_name, settings.log_level, settings.log_format)
        asyncio.run(ensure_database(settings.sqlalchemy_url))
        upgrade(MIGRATIONS, settings.sqlalchemy_url)
        kid = asyncio.run(rotate_keys(settings))
        print(f"new signing key {kid} is active")
        return
    main(settings, create_app, MIGRATIONS, argv)  # type: ignore[arg-type]


if __name__ == "__main__":
    run(sys.argv[1:])
