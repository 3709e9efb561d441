"""Alembic environment of the members service."""

from servicekit.migrations import run_env

from members.models import Base

run_env(Base.metadata)
