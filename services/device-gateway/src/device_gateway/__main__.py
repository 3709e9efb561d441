"""``python -m device_gateway [serve|migrate]``."""

from pathlib import Path

from device_gateway.config import Settings
from device_gateway.main import create_app
from servicekit.runner import main

MIGRATIONS = Path(__file__).parent / "migrations"

if __name__ == "__main__":
    main(Settings(), create_app, MIGRATIONS)  # type: ignore[arg-type]
