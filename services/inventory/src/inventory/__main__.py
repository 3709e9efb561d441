"""``python -m inventory [serve|migrate]``."""

from pathlib import Path

from servicekit.runner import main

from inventory.config import Settings
from inventory.main import create_app

MIGRATIONS = Path(__file__).parent / "migrations"

if __name__ == "__main__":
    main(Settings(), create_app, MIGRATIONS)  # type: ignore[arg-type]
