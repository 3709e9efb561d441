"""Alembic environment of the payments service."""

from servicekit.migrations import run_env

from payments.models import Base

run_env(Base.metadata)
