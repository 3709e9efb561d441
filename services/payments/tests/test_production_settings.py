"""In production payments refuses the sandbox: routed methods, its published secret, and
sandbox instructions in requests."""

from __future__ import annotations

import pytest

from payments.config import Settings
from payments.main import create_app
from servicekit.bus.factory import InMemoryBus
from servicekit.settings import UnsafeSettingsError

SAFE = {
    "COUNTERTOP_ENV": "production",
    "method_providers": {},
    "sandbox_secret": "a-secret-only-this-deployment-knows",
    "sandbox_instructions_enabled": False,
}


def test_safe_production_settings_start() -> None:
    Settings(**SAFE).check_production()


@pytest.mark.parametrize(
    ("change", "variable"),
    [
        ({"method_providers": {"alipay": "sandbox"}}, "PAYMENTS_METHOD_PROVIDERS"),
        ({"sandbox_secret": "sandbox-notify-secret-change-me"}, "PAYMENTS_SANDBOX_SECRET"),
        ({"sandbox_secret": ""}, "PAYMENTS_SANDBOX_SECRET"),
        ({"sandbox_instructions_enabled": True}, "PAYMENTS_SANDBOX_INSTRUCTIONS_ENABLED"),
    ],
)
def test_each_unsafe_setting_is_refused_by_name(change: dict[str, object], variable: str) -> None:
    settings = Settings(**(SAFE | change))
    with pytest.raises(UnsafeSettingsError) as refused:
        create_app(settings, bus=InMemoryBus())
    assert len(refused.value.problems) == 1
    assert variable in str(refused.value)


def test_the_shipped_defaults_are_refused_in_production() -> None:
    with pytest.raises(UnsafeSettingsError) as refused:
        Settings(COUNTERTOP_ENV="production").check_production()
    assert len(refused.value.problems) == 3
    assert "alipay" in str(refused.value)
    Settings(COUNTERTOP_ENV="local").check_production()
