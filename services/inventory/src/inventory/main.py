"""The inventory service: the catalog and the stock ledger of every store.

``create_app`` is its only wiring.
"""

from fastapi import FastAPI

from inventory.config import Settings
from servicekit.app import create_app as build_app
from servicekit.bus.factory import Bus


def create_app(settings: Settings | None = None, *, bus: Bus | None = None) -> FastAPI:
    return build_app(settings or Settings(), title="Countertop Inventory", bus=bus)
