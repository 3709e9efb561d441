"""Alembic environment of the device-gateway service."""

from servicekit.migrations import run_env

from device_gateway.models import Base

run_env(Base.metadata)
