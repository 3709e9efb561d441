"""Alembic environment of the inventory service."""

from servicekit.migrations import run_env

from inventory.models import Base

run_env(Base.metadata)
