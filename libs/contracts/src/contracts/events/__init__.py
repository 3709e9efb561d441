"""Event payload schemas, one module per producing service (``contracts/events/<service>.py``).

Importing this package imports every module in it, so that every published event is registered
in :data:`contracts.registry.default_registry` and covered by the schema snapshots.
"""

from __future__ import annotations

import importlib
import pkgutil


def _import_all() -> list[str]:
    # walk_packages also descends into subpackages, should a service's events outgrow a module.
    names = sorted(info.name for info in pkgutil.walk_packages(__path__, prefix=f"{__name__}."))
    for name in names:
        importlib.import_module(name)
    return names


EVENT_MODULES: tuple[str, ...] = tuple(_import_all())
"""The fully qualified names of the modules that declare events, in import order."""
