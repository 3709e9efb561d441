"""Dependencies shared by the routers: the service's settings, provider adapters and the
way to read an order through from the orders service."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request

from payments.config import Settings
from payments.payment.service import OrderSource
from payments.providers import Providers
from payments.replica.read_through import OrdersClient


def get_settings(request: Request) -> Settings:
    return cast(Settings, request.app.state.settings)


def get_providers(request: Request) -> Providers:
    return cast(Providers, request.app.state.providers)


def get_order_source(request: Request) -> OrderSource:
    """Reads go to orders with the caller's own token, so orders applies the caller's rights."""
    settings = get_settings(request)
    return OrderSource(
        client=cast(OrdersClient, request.app.state.orders_client),
        authorization=request.headers.get("Authorization"),
        wait_seconds=settings.order_wait_seconds,
    )


SettingsDep = Annotated[Settings, Depends(get_settings)]
ProvidersDep = Annotated[Providers, Depends(get_providers)]
OrderSourceDep = Annotated[OrderSource, Depends(get_order_source)]
