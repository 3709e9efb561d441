"""``python -m orders [serve|migrate]``."""

from pathlib import Path

from orders.config import Settings
from orders.main import create_app
from servicekit.runner import main

MIGRATIONS = Path(__file__).parent / "migrations"

if __name__ == "__main__":
    main(Settings(), create_app, MIGRATIONS)  # type: ignore[arg-type]
