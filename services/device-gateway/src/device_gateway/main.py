"""The device-gateway service: terminals, printers and kitchen displays.

``create_app`` is its only wiring: the HTTP routers, the consumers of order and store events,
and three background workers (print dispatcher, MQTT bridge, offline-alert check).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from fastapi import FastAPI

from device_gateway.alerts import figures
from device_gateway.alerts import service as alerts
from device_gateway.alerts.router import router as alerts_router
from device_gateway.bridge.mqtt import MqttBridge
from device_gateway.bridge.router import router as commands_router
from device_gateway.config import Settings
from device_gateway.kds.router import router as kds_router
from device_gateway.printing.dispatcher import PrintDispatcher
from device_gateway.printing.handlers import build_handlers
from device_gateway.printing.router import router as printing_router
from device_gateway.registry.router import router as registry_router
from device_gateway.stores.handlers import handlers as store_handlers
from servicekit.app import Runtime
from servicekit.app import create_app as build_app
from servicekit.auth import TokenVerifier
from servicekit.bus.factory import Bus
from servicekit.db import Database
from servicekit.telemetry import metrics

log = logging.getLogger(__name__)

PUBLISHES = ["devices.device", "devices.print_job", "devices.alert"]


async def _offline_alerts(database: Database, settings: Settings) -> None:
    while True:
        await asyncio.sleep(settings.alert_check_interval)
        try:
            async with database.transaction() as session:
                await alerts.raise_offline_alerts(session, settings.offline_alert_minutes)
        except Exception as exc:
            log.warning("offline alert check failed: %s", exc)


def create_app(
    settings: Settings | None = None,
    *,
    bus: Bus | None = None,
    token_verifier: TokenVerifier | None = None,
) -> FastAPI:
    settings = settings or Settings()

    async def start_workers(runtime: Runtime) -> None:
        runtime.extras["unregister_figures"] = metrics.register_scrape_hook(
            settings.service_name, figures.refresher(runtime.database)
        )
        if settings.run_printing:
            dispatcher = PrintDispatcher(runtime.database, settings)
            await dispatcher.start()
            runtime.extras["print_dispatcher"] = dispatcher
        if settings.run_mqtt_bridge and settings.mqtt_url:
            bridge = MqttBridge(runtime.database, settings)
            await bridge.start()
            runtime.extras["mqtt_bridge"] = bridge
        runtime.extras["offline_alerts"] = asyncio.create_task(
            _offline_alerts(runtime.database, settings), name="offline-alerts"
        )

    async def stop_workers(runtime: Runtime) -> None:
        unregister = runtime.extras.pop("unregister_figures", None)
        if unregister is not None:
            unregister()
        task = runtime.extras.pop("offline_alerts", None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for name in ("mqtt_bridge", "print_dispatcher"):
            worker = runtime.extras.pop(name, None)
            if worker is not None:
                await worker.stop()

    return build_app(
        settings,
        title="Countertop Device gateway",
        routers=[registry_router, commands_router, printing_router, kds_router, alerts_router],
        consumers={
            "printing": build_handlers(settings.receipt_qr_template),
            "stores": store_handlers,
        },
        publishes=PUBLISHES,
        bus=bus,
        token_verifier=token_verifier,
        on_startup=[start_workers],
        on_shutdown=[stop_workers],
    )
