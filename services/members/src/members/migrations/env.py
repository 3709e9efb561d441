"""Alembic environment of the members service."""

from members.models import Base
from members.stored_value import models as _stored_value  # noqa: F401  (its tables)
from servicekit.migrations import run_env

run_env(Base.metadata)
