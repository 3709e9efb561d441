"""Dependencies shared by the routers: the service's settings, provider adapters and the
way to read an order through from the orders service.

They are coroutines although they never wait: FastAPI runs a plain function dependency in a
worker thread, a hand-off to a thread and back on every request for reading an attribute."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request

from payments.config import Settings
from payments.payment.service import OrderSource
from payments.providers import Providers
from payments.replica.read_through import OrdersClient


async def get_settings(request: Request) -> Settings:
    return _settings(request)


def _settings(request: Request) -> Settings:
    return cast(Settings, request.app.state.settings)


async def get_providers(request: Request) -> Providers:
    return cast(Providers, request.app.state.providers)


async def get_order_source(request: Request) -> OrderSource:
    """Reads go to orders with the caller's own token, so orders applies the caller's rights."""
    settings = _settings(request)
    return OrderSource(
        client=cast(OrdersClient, request.app.state.orders_client),
        authorization=request.headers.get("Authorization"),
        wait_seconds=settings.order_wait_seconds,
    )


SettingsDep = Annotated[Settings, Depends(get_settings)]
ProvidersDep = Annotated[Providers, Depends(get_providers)]
OrderSourceDep = Annotated[OrderSource, Depends(get_order_source)]
