"""Settings of the identity service (environment prefix ``IDENTITY_``)."""

from typing import Literal

from pydantic import SecretStr
from pydantic_settings import SettingsConfigDict

from servicekit.settings import ServiceSettings


class Settings(ServiceSettings):
    service_name = "identity"
    model_config = SettingsConfigDict(env_prefix="IDENTITY_", extra="ignore")

    port: int = 8101

    # Tokens.
    access_token_ttl_seconds: int = 900
    refresh_token_ttl_seconds: int = 30 * 24 * 3600
    signing_algorithm: str = "EdDSA"
    # URL-safe base64 of 32 random bytes; when set, private signing keys are stored encrypted
    # (AES-256-GCM). Without it they are stored in clear: refused in production, a warning
    # elsewhere.
    key_encryption_key: SecretStr | None = None
    # How long a replica trusts its cached copy of the signing keys before re-reading them.
    key_cache_seconds: float = 30.0

    # Passwords (argon2id). The defaults follow RFC 9106's second recommended option.
    password_time_cost: int = 3
    password_memory_cost_kib: int = 65536
    password_parallelism: int = 4

    # Brute-force protection: failed sign-ins are counted per phone and per client address.
    # After ``login_free_failures`` failures each further one doubles the wait before the next
    # attempt (from ``login_base_delay_seconds`` up to ``login_max_delay_seconds``); a counter
    # is forgotten ``login_failure_window_seconds`` after its last failure. A manager lifts a
    # phone's wait with POST /v1/staff/{id}/unlock.
    login_free_failures: int = 3
    login_base_delay_seconds: int = 2
    login_max_delay_seconds: int = 300
    login_address_free_failures: int = 20
    login_failure_window_seconds: int = 3600

    # Verification codes. ``log`` writes them to the service log (local use only); ``aliyun``
    # sends them by SMS through Alibaba Cloud's Dysmsapi SendSms.
    code_sender: Literal["log", "aliyun"] = "log"
    aliyun_sms_endpoint: str = "https://dysmsapi.aliyuncs.com/"
    aliyun_sms_access_key_id: str | None = None
    aliyun_sms_access_key_secret: SecretStr | None = None
    aliyun_sms_sign_name: str | None = None
    # A template whose text has a ``${code}`` variable.
    aliyun_sms_template_code: str | None = None
    aliyun_sms_timeout_seconds: float = 5.0
    code_ttl_seconds: int = 300
    code_max_attempts: int = 5
    code_min_interval_seconds: int = 60
    code_daily_limit: int = 10
    # Exposes GET /v1/dev/verification-codes with the codes sent by the log sender. Never in
    # production: it hands out every code.
    dev_code_endpoint: bool = False

    # Seeds the demo merchant once at start-up (local stack only).
    seed_demo: bool = False

    def production_problems(self) -> list[str]:
        problems = super().production_problems()
        if self.key_encryption_key is None:
            problems.append(
                f"{self.env_name('key_encryption_key')} is not set: token signing keys would "
                "be stored in clear"
            )
        if self.code_sender == "log":
            problems.append(
                f"{self.env_name('code_sender')} is 'log': verification codes would be written "
                "to the log, where anyone reading it could sign in"
            )
        else:
            for field in (
                "aliyun_sms_access_key_id",
                "aliyun_sms_access_key_secret",
                "aliyun_sms_sign_name",
                "aliyun_sms_template_code",
            ):
                if not getattr(self, field):
                    problems.append(f"{self.env_name(field)} is not set: no SMS can be sent")
        if self.dev_code_endpoint:
            problems.append(
                f"{self.env_name('dev_code_endpoint')} is on: it hands out every verification code"
            )
        if self.seed_demo:
            problems.append(
                f"{self.env_name('seed_demo')} is on: it creates the demo merchant and its "
                "published passwords"
            )
        return problems
