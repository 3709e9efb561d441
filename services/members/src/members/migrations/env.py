"""Alembic environment of the members service."""

from members.models import Base
from servicekit.migrations import run_env

run_env(Base.metadata)
