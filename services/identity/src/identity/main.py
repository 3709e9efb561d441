"""The identity service: merchants, stores, staff, roles, login and tokens.

``create_app`` is its only wiring.
"""

from fastapi import FastAPI

from identity.config import Settings
from servicekit.app import create_app as build_app
from servicekit.bus.factory import Bus


def create_app(settings: Settings | None = None, *, bus: Bus | None = None) -> FastAPI:
    return build_app(settings or Settings(), title="Countertop Identity", bus=bus)
