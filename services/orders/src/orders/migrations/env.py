"""Alembic environment of the orders service."""

from servicekit.migrations import run_env

from orders.models import Base

run_env(Base.metadata)
