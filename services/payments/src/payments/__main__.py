"""``python -m payments [serve|migrate]``."""

from pathlib import Path

from servicekit.runner import main

from payments.config import Settings
from payments.main import create_app

MIGRATIONS = Path(__file__).parent / "migrations"

if __name__ == "__main__":
    main(Settings(), create_app, MIGRATIONS)  # type: ignore[arg-type]
