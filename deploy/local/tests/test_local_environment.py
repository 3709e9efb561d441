"""The local stack says it is local: every service it starts passes its start-up checks, even
when the shell that ran ``make up`` says production."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from countertop_local.config import SERVICES, LocalStack, Service
from countertop_local.stack import child_environment
from servicekit.settings import ServiceSettings, UnsafeSettingsError


def _settings_class(module: str) -> type[ServiceSettings]:
    settings: type[ServiceSettings] = importlib.import_module(f"{module}.config").Settings
    return settings


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_every_service_starts_on_the_local_stack(
    service: Service, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shell = {"PATH": "/usr/bin", "COUNTERTOP_ENV": "production"}
    child = child_environment(shell, LocalStack(var_dir=tmp_path))
    assert child["COUNTERTOP_ENV"] == "local"
    for name, value in child.items():
        monkeypatch.setenv(name, value)
    settings = _settings_class(service.package)()
    assert settings.environment == "local"
    settings.check_production()


def test_the_same_settings_are_refused_in_production(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    child = child_environment({"PATH": "/usr/bin"}, LocalStack(var_dir=tmp_path))
    for name, value in child.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("COUNTERTOP_ENV", "production")
    with pytest.raises(UnsafeSettingsError, match="IDENTITY_SEED_DEMO"):
        _settings_class("identity")().check_production()
