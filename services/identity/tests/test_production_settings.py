"""In production identity refuses codes in the log, the development code endpoint, the demo
seed, signing keys in clear, and an SMS sender without its credentials."""

from __future__ import annotations

import base64
import os
from typing import Any

import pytest

from identity.config import Settings
from identity.main import code_sender_for, create_app
from identity.verification.aliyun import AliyunSmsSender
from identity.verification.sender import LogCodeSender
from servicekit.bus.factory import InMemoryBus
from servicekit.settings import UnsafeSettingsError

SAFE: dict[str, Any] = {
    "COUNTERTOP_ENV": "production",
    "key_encryption_key": base64.urlsafe_b64encode(os.urandom(32)).decode(),
    "code_sender": "aliyun",
    "aliyun_sms_access_key_id": "LTAI-deployment",
    "aliyun_sms_access_key_secret": "deployment-secret",
    "aliyun_sms_sign_name": "Countertop",
    "aliyun_sms_template_code": "SMS_000001",
}


def test_safe_production_settings_start_with_the_sms_sender() -> None:
    settings = Settings(**SAFE)
    settings.check_production()
    sender = code_sender_for(settings)
    assert isinstance(sender, AliyunSmsSender)
    assert sender.sign_name == "Countertop"
    assert create_app(settings, bus=InMemoryBus()) is not None


@pytest.mark.parametrize(
    ("change", "variable"),
    [
        ({"key_encryption_key": None}, "IDENTITY_KEY_ENCRYPTION_KEY"),
        ({"code_sender": "log"}, "IDENTITY_CODE_SENDER"),
        ({"dev_code_endpoint": True}, "IDENTITY_DEV_CODE_ENDPOINT"),
        ({"seed_demo": True}, "IDENTITY_SEED_DEMO"),
        ({"aliyun_sms_access_key_id": None}, "IDENTITY_ALIYUN_SMS_ACCESS_KEY_ID"),
        ({"aliyun_sms_access_key_secret": None}, "IDENTITY_ALIYUN_SMS_ACCESS_KEY_SECRET"),
        ({"aliyun_sms_sign_name": None}, "IDENTITY_ALIYUN_SMS_SIGN_NAME"),
        ({"aliyun_sms_template_code": None}, "IDENTITY_ALIYUN_SMS_TEMPLATE_CODE"),
    ],
)
def test_each_unsafe_setting_is_refused_by_name(change: dict[str, Any], variable: str) -> None:
    settings = Settings(**(SAFE | change))
    with pytest.raises(UnsafeSettingsError) as refused:
        create_app(settings, bus=InMemoryBus())
    assert len(refused.value.problems) == 1
    assert variable in refused.value.problems[0]


def test_the_local_defaults_run_outside_production_only() -> None:
    local = Settings(COUNTERTOP_ENV="local", seed_demo=True, dev_code_endpoint=True)
    local.check_production()
    assert isinstance(code_sender_for(local), LogCodeSender)
    with pytest.raises(UnsafeSettingsError) as refused:
        Settings(
            COUNTERTOP_ENV="production", seed_demo=True, dev_code_endpoint=True
        ).check_production()
    assert len(refused.value.problems) == 4
