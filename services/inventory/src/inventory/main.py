"""The inventory service: the catalog and the stock ledger of every store.

``create_app`` is its only wiring.
"""

from fastapi import FastAPI

from inventory.catalog.router import router as catalog_router
from inventory.categories.router import router as categories_router
from inventory.config import Settings
from inventory.imports.router import router as imports_router
from inventory.imports.service import start_worker, stop_worker
from inventory.pricing.router import changes as price_changes_router
from inventory.pricing.router import groups as store_groups_router
from inventory.pricing.service import start_scheduler, stop_scheduler
from inventory.purchasing.router import orders as purchase_orders_router
from inventory.purchasing.router import suppliers as suppliers_router
from inventory.stock.handlers import handlers as sales_handlers
from inventory.stock.router import router as stock_router
from inventory.stocktakes.router import router as stocktakes_router
from inventory.stores.handlers import handlers as store_handlers
from inventory.taxes.router import router as taxes_router
from inventory.tobacco.router import router as tobacco_router
from inventory.transfers.router import router as transfers_router
from inventory.transfers.router import stock as stock_overview_router
from servicekit.app import create_app as build_app
from servicekit.auth import TokenVerifier
from servicekit.bus.factory import Bus

PUBLISHES = ["inventory.product", "inventory.stock"]


def create_app(
    settings: Settings | None = None,
    *,
    bus: Bus | None = None,
    token_verifier: TokenVerifier | None = None,
) -> FastAPI:
    return build_app(
        settings or Settings(),
        title="Countertop Inventory",
        routers=[
            catalog_router,
            categories_router,
            taxes_router,
            stock_router,
            suppliers_router,
            purchase_orders_router,
            stocktakes_router,
            transfers_router,
            stock_overview_router,
            tobacco_router,
            store_groups_router,
            price_changes_router,
            imports_router,
        ],
        consumers={"sales": sales_handlers, "stores": store_handlers},
        publishes=PUBLISHES,
        bus=bus,
        token_verifier=token_verifier,
        on_startup=[start_scheduler, start_worker],
        on_shutdown=[stop_scheduler, stop_worker],
    )
