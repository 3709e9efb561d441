"""``COUNTERTOP_ENV`` and the production hook every service's settings extend."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import FastAPI

from servicekit.app import create_app
from servicekit.bus.factory import InMemoryBus
from servicekit.runner import main
from servicekit.settings import ServiceSettings, UnsafeSettingsError


class ShopSettings(ServiceSettings):
    service_name = "shop"
    model_config = {"env_prefix": "SHOP_", "extra": "ignore"}

    demo_mode: bool = False

    def production_problems(self) -> list[str]:
        problems = super().production_problems()
        if self.demo_mode:
            problems.append(f"{self.env_name('demo_mode')} is on")
        return problems


def test_production_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COUNTERTOP_ENV", raising=False)
    assert ShopSettings().environment == "production"
    monkeypatch.setenv("COUNTERTOP_ENV", "local")
    assert ShopSettings().environment == "local"


def test_an_unknown_environment_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COUNTERTOP_ENV", "staging")
    with pytest.raises(ValueError, match="COUNTERTOP_ENV"):
        ShopSettings()


def test_env_name_follows_the_prefix_and_the_aliases() -> None:
    settings = ShopSettings()
    assert settings.env_name("demo_mode") == "SHOP_DEMO_MODE"
    assert settings.env_name("postgres_url") == "POSTGRES_URL"
    assert settings.env_name("environment") == "COUNTERTOP_ENV"


def test_production_refuses_what_the_subclass_finds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOP_DEMO_MODE", "true")
    monkeypatch.setenv("COUNTERTOP_ENV", "production")
    with pytest.raises(UnsafeSettingsError) as refused:
        ShopSettings().check_production()
    assert refused.value.problems == ["SHOP_DEMO_MODE is on"]
    assert "COUNTERTOP_ENV=production" in str(refused.value)
    assert "SHOP_DEMO_MODE" in str(refused.value)
    monkeypatch.setenv("COUNTERTOP_ENV", "test")
    ShopSettings().check_production()  # outside production the same settings run


def test_create_app_refuses_unsafe_production_settings() -> None:
    settings = ShopSettings(COUNTERTOP_ENV="production", demo_mode=True)
    with pytest.raises(UnsafeSettingsError, match="SHOP_DEMO_MODE"):
        create_app(settings, title="shop", bus=InMemoryBus())
    safe = ShopSettings(COUNTERTOP_ENV="production")
    assert isinstance(create_app(safe, title="shop", bus=InMemoryBus()), FastAPI)


def test_the_runner_exits_before_touching_the_database(tmp_path: Path) -> None:
    # An unreachable database: reaching it would hang or fail differently.
    settings = ShopSettings(
        COUNTERTOP_ENV="production", demo_mode=True, database_url="postgresql://nobody@0.0.0.0:1/x"
    )

    def never(_: ServiceSettings) -> FastAPI:
        raise AssertionError("the app must not be built")

    with pytest.raises(SystemExit, match="SHOP_DEMO_MODE"):
        main(settings, never, tmp_path, argv=["serve"])
