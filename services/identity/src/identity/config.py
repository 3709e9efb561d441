"""Settings of the identity service (environment prefix ``IDENTITY_``)."""

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
    # (AES-256-GCM). Without it they are stored in clear and a warning is logged at start-up.
    key_encryption_key: SecretStr | None = None
    # How long a replica trusts its cached copy of the signing keys before re-reading them.
    key_cache_seconds: float = 30.0

    # Passwords (argon2id). The defaults follow RFC 9106's second recommended option.
    password_time_cost: int = 3
    password_memory_cost_kib: int = 65536
    password_parallelism: int = 4

    # Brute-force protection.
    login_max_failures: int = 5
    login_lockout_seconds: int = 900

    # Verification codes.
    code_ttl_seconds: int = 300
    code_max_attempts: int = 5
    code_min_interval_seconds: int = 60
    code_daily_limit: int = 10
    # Exposes GET /v1/dev/verification-codes with the codes sent by the log sender. Never in
    # production: it hands out every code.
    dev_code_endpoint: bool = False

    # Seeds the demo merchant once at start-up (local stack only).
    seed_demo: bool = False
