"""Settings of the payments service (environment prefix ``PAYMENTS_``)."""

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from servicekit.settings import ServiceSettings

#: The sandbox secret shipped in this repository: anyone can sign notifications with it.
DEFAULT_SANDBOX_SECRET = "sandbox-notify-secret-change-me"
MIN_SECRET_LENGTH = 16


class Settings(ServiceSettings):
    service_name = "payments"
    model_config = SettingsConfigDict(env_prefix="PAYMENTS_", extra="ignore")

    port: int = 8105
    #: Where a provider reaches this service (its notification URLs are built from it).
    public_url: str = "http://127.0.0.1:8105"
    #: Fee rate of a merchant that has not set its own, in basis points (38 = 0.38%).
    default_fee_rate_bps: int = Field(default=38, ge=0, le=10_000)
    #: Provider that serves each non-cash method.
    method_providers: dict[str, str] = Field(
        default_factory=lambda: {
            "wechat_pay": "sandbox",
            "alipay": "sandbox",
            "unionpay": "sandbox",
            "card": "sandbox",
        }
    )
    #: Shared secret of the sandbox provider's signed notifications.
    sandbox_secret: str = DEFAULT_SANDBOX_SECRET
    #: Seconds the sandbox waits before it calls back.
    sandbox_notify_delay: float = 0.2
    #: Whether requests may carry ``sandbox`` instructions (never in production).
    sandbox_instructions_enabled: bool = True
    #: Notifications whose timestamp is further than this from now are refused.
    notification_tolerance_seconds: int = 300
    #: A pending payment older than this is queried at the provider.
    reconcile_after_seconds: float = 30.0
    #: A pending payment the provider still has no answer for after this is failed.
    payment_timeout_seconds: float = 300.0
    #: Pause between two passes of the background reconciler.
    reconcile_interval_seconds: float = 10.0
    run_reconciler: bool = True
    #: The orders service, asked for an order a payment outruns the orders events for.
    orders_url: str = "http://127.0.0.1:8102"
    #: How long the orders service may take to answer such a read-through.
    orders_timeout_seconds: float = Field(default=2.0, gt=0)
    #: How long a payment waits for the order replica when orders cannot be asked.
    order_wait_seconds: float = Field(default=1.0, ge=0)

    def production_problems(self) -> list[str]:
        problems = super().production_problems()
        sandboxed = sorted(
            m for m, provider in self.method_providers.items() if provider == "sandbox"
        )
        if sandboxed:
            problems.append(
                f"{self.env_name('method_providers')} routes {', '.join(sandboxed)} to the sandbox "
                "provider, which confirms payments nobody made"
            )
        if self.sandbox_secret == DEFAULT_SANDBOX_SECRET:
            problems.append(
                f"{self.env_name('sandbox_secret')} has its published default value: anyone can "
                "sign provider notifications with it"
            )
        elif len(self.sandbox_secret) < MIN_SECRET_LENGTH:
            problems.append(
                f"{self.env_name('sandbox_secret')} is shorter than {MIN_SECRET_LENGTH} "
                "characters: too easy to guess"
            )
        if self.sandbox_instructions_enabled:
            problems.append(
                f"{self.env_name('sandbox_instructions_enabled')} is on: requests could steer "
                "the provider's answer"
            )
        return problems
