"""Alembic environment of the identity service."""

from identity.tables import Base
from servicekit.migrations import run_env

run_env(Base.metadata)
