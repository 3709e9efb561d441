"""Alembic environment of the device-gateway service."""

from device_gateway.models import Base
from servicekit.migrations import run_env

run_env(Base.metadata)
