"""The members service: members, points, levels, tags, coupons and stored value.

``create_app`` is its only wiring.
"""

from __future__ import annotations

from fastapi import FastAPI

from members.analysis.handlers import handlers as visit_handlers
from members.analysis.router import router as analysis_router
from members.birthdays.router import router as birthdays_router
from members.birthdays.tasks import start_sweeps, stop_sweeps
from members.config import Settings
from members.coupons.handlers import handlers as coupon_handlers
from members.coupons.router import router as coupons_router
from members.imports.router import router as imports_router
from members.imports.service import start_worker, stop_worker
from members.levels.router import router as levels_router
from members.member.router import router as members_router
from members.points.handlers import handlers as points_handlers
from members.points.router import router as points_router
from members.stored_value.handlers import handlers as stored_value_handlers
from members.stored_value.router import router as stored_value_router
from members.tags.router import router as tags_router
from members.verification.router import router as verification_router
from servicekit.app import create_app as build_app
from servicekit.auth import TokenVerifier
from servicekit.bus.factory import Bus

PUBLISHES = ["members.member", "members.points", "members.coupon", "members.stored_value"]


def create_app(
    settings: Settings | None = None,
    *,
    bus: Bus | None = None,
    token_verifier: TokenVerifier | None = None,
) -> FastAPI:
    return build_app(
        settings or Settings(),
        title="Countertop Members",
        # Before the member routes: /v1/members/analysis is not a member id.
        routers=[
            analysis_router,
            imports_router,
            verification_router,
            members_router,
            points_router,
            coupons_router,
            tags_router,
            levels_router,
            birthdays_router,
            stored_value_router,
        ],
        consumers={
            "points": points_handlers,
            "visits": visit_handlers,
            "coupons": coupon_handlers,
            "stored-value": stored_value_handlers,
        },
        publishes=PUBLISHES,
        bus=bus,
        token_verifier=token_verifier,
        on_startup=[start_worker, start_sweeps],
        on_shutdown=[stop_sweeps, stop_worker],
    )
