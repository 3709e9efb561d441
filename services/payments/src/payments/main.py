"""The payments service: payments, refunds, fees and settlement.

``create_app`` is its only wiring.
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx
from fastapi import FastAPI

from payments.config import Settings
from payments.figures.router import router as figures_router
from payments.offline.handlers import offline_handlers
from payments.payment import gauges
from payments.payment.reconcile import Reconciler
from payments.payment.router import router as payments_router
from payments.providers import Providers
from payments.providers.base import PaymentProvider
from payments.providers.sandbox import Notifier, SandboxProvider, http_notifier
from payments.replica.handlers import handlers as replica_handlers
from payments.replica.read_through import OrdersClient
from payments.settlement.router import router as settlement_router
from payments.stored_value.handlers import handlers as stored_value_handlers
from servicekit.app import Runtime
from servicekit.app import create_app as build_app
from servicekit.auth import TokenVerifier
from servicekit.bus.factory import Bus
from servicekit.telemetry import metrics

PUBLISHES = ["payments.payment"]


def create_app(
    settings: Settings | None = None,
    *,
    bus: Bus | None = None,
    token_verifier: TokenVerifier | None = None,
    sandbox_notifier: Notifier | None = None,
    providers: Mapping[str, PaymentProvider] | None = None,
    orders_transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    """``sandbox_notifier`` replaces the sandbox's HTTP callback (tests deliver straight into
    the app); ``providers`` adds or replaces provider adapters by name; ``orders_transport``
    replaces the network to the orders service (tests)."""
    config = settings or Settings()
    orders_client = OrdersClient(
        config.orders_url, timeout=config.orders_timeout_seconds, transport=orders_transport
    )
    sandbox = SandboxProvider(
        secret=config.sandbox_secret,
        notifier=sandbox_notifier or http_notifier(config.public_url),
        notify_delay=config.sandbox_notify_delay,
        tolerance_seconds=config.notification_tolerance_seconds,
    )
    adapters: dict[str, PaymentProvider] = {sandbox.name: sandbox, **(providers or {})}
    registry = Providers(adapters, config.method_providers)

    async def start_reconciler(runtime: Runtime) -> None:
        runtime.extras["unregister_gauges"] = metrics.register_scrape_hook(
            config.service_name, gauges.refresher(runtime.database)
        )
        if config.run_reconciler:
            reconciler = Reconciler(
                runtime.database,
                registry,
                interval=config.reconcile_interval_seconds,
                older_than=config.reconcile_after_seconds,
                timeout=config.payment_timeout_seconds,
            )
            reconciler.start()
            runtime.extras["reconciler"] = reconciler

    async def stop_background(runtime: Runtime) -> None:
        unregister = runtime.extras.pop("unregister_gauges", None)
        if unregister is not None:
            unregister()
        reconciler = runtime.extras.pop("reconciler", None)
        if isinstance(reconciler, Reconciler):
            await reconciler.stop()
        await sandbox.close()
        await orders_client.close()

    app = build_app(
        config,
        title="Countertop Payments",
        routers=[figures_router, payments_router, settlement_router],
        consumers={
            "order-replica": replica_handlers,
            "orders-offline": offline_handlers(
                config.method_providers, config.default_fee_rate_bps
            ),
            "stored-value": stored_value_handlers,
        },
        publishes=PUBLISHES,
        bus=bus,
        token_verifier=token_verifier,
        on_startup=[start_reconciler],
        on_shutdown=[stop_background],
    )
    app.state.providers = registry
    app.state.sandbox = sandbox
    app.state.orders_client = orders_client
    return app
