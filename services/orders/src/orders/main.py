"""The orders service: orders from every channel, checkout and kitchen tickets.

``create_app`` is its only wiring.
"""

from fastapi import FastAPI

from orders.catalog.handlers import handlers as catalog_handlers
from orders.config import Settings
from orders.coupons.handlers import handlers as coupon_handlers
from orders.exports.router import router as exports_router
from orders.members.handlers import handlers as member_handlers
from orders.order.handlers import handlers as payment_handlers
from orders.order.router import router as orders_router
from orders.promotions.router import router as promotions_router
from orders.reports.router import router as reports_router
from orders.shifts.router import router as shifts_router
from orders.stores.handlers import handlers as store_handlers
from orders.sync.router import router as sync_router
from servicekit.app import create_app as build_app
from servicekit.auth import TokenVerifier
from servicekit.bus.factory import Bus

PUBLISHES = ["orders.order", "orders.kitchen_ticket", "orders.coupon"]


def create_app(
    settings: Settings | None = None,
    *,
    bus: Bus | None = None,
    token_verifier: TokenVerifier | None = None,
) -> FastAPI:
    return build_app(
        settings or Settings(),
        title="Countertop Orders",
        routers=[
            orders_router,
            shifts_router,
            sync_router,
            reports_router,
            exports_router,
            promotions_router,
        ],
        consumers={
            "catalog": catalog_handlers,
            "stores": store_handlers,
            "members": member_handlers,
            "coupons": coupon_handlers,
            "payments": payment_handlers,
        },
        publishes=PUBLISHES,
        bus=bus,
        token_verifier=token_verifier,
    )
