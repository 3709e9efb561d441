"""``python -m identity [serve|migrate]``."""

from pathlib import Path

from identity.config import Settings
from identity.main import create_app
from servicekit.runner import main

MIGRATIONS = Path(__file__).parent / "migrations"

if __name__ == "__main__":
    main(Settings(), create_app, MIGRATIONS)  # type: ignore[arg-type]
