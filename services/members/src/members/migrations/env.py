"""Alembic environment of the members service."""

# Each domain's tables live beside it; importing them completes the metadata.
from members.birthdays import models as _birthdays  # noqa: F401
from members.coupons import models as _coupons  # noqa: F401
from members.levels import models as _levels  # noqa: F401
from members.models import Base
from members.stored_value import models as _stored_value  # noqa: F401
from members.tags import models as _tags  # noqa: F401
from servicekit.migrations import run_env

run_env(Base.metadata)
