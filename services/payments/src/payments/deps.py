"""Dependencies shared by the routers: the service's settings and provider adapters."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request

from payments.config import Settings
from payments.providers import Providers


def get_settings(request: Request) -> Settings:
    return cast(Settings, request.app.state.settings)


def get_providers(request: Request) -> Providers:
    return cast(Providers, request.app.state.providers)


SettingsDep = Annotated[Settings, Depends(get_settings)]
ProvidersDep = Annotated[Providers, Depends(get_providers)]
