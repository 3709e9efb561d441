"""The members service: members, points and stored value.

``create_app`` is its only wiring.
"""

from __future__ import annotations

from fastapi import FastAPI

from members.config import Settings
from members.member.router import router as members_router
from members.points.handlers import handlers as points_handlers
from members.points.router import router as points_router
from members.stored_value.handlers import handlers as stored_value_handlers
from members.stored_value.router import router as stored_value_router
from servicekit.app import create_app as build_app
from servicekit.auth import TokenVerifier
from servicekit.bus.factory import Bus

PUBLISHES = ["members.member", "members.points", "members.stored_value"]


def create_app(
    settings: Settings | None = None,
    *,
    bus: Bus | None = None,
    token_verifier: TokenVerifier | None = None,
) -> FastAPI:
    return build_app(
        settings or Settings(),
        title="Countertop Members",
        routers=[members_router, points_router, stored_value_router],
        consumers={"points": points_handlers, "stored-value": stored_value_handlers},
        publishes=PUBLISHES,
        bus=bus,
        token_verifier=token_verifier,
    )
