"""Imports every domain's tables so ``Base.metadata`` is complete (migrations, tests)."""

from identity.audit import models as audit_models
from identity.auth import models as auth_models
from identity.handover import models as handover_models
from identity.merchants import models as merchant_models
from identity.models import Base
from identity.regions import models as region_models
from identity.staff import models as staff_models
from identity.stores import models as store_models
from identity.verification import models as verification_models

__all__ = [
    "Base",
    "audit_models",
    "auth_models",
    "handover_models",
    "merchant_models",
    "region_models",
    "staff_models",
    "store_models",
    "verification_models",
]
