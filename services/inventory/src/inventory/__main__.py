"""``python -m inventory [serve|migrate]``."""

from pathlib import Path

from inventory.config import Settings
from inventory.main import create_app
from servicekit.runner import main

MIGRATIONS = Path(__file__).parent / "migrations"

if __name__ == "__main__":
    main(Settings(), create_app, MIGRATIONS)  # type: ignore[arg-type]
