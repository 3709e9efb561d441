"""``python -m members [serve|migrate]``."""

from pathlib import Path

from members.config import Settings
from members.main import create_app
from servicekit.runner import main

MIGRATIONS = Path(__file__).parent / "migrations"

if __name__ == "__main__":
    main(Settings(), create_app, MIGRATIONS)  # type: ignore[arg-type]
