"""Settings of the members service (environment prefix ``MEMBERS_``)."""

from pydantic_settings import SettingsConfigDict

from servicekit.settings import ServiceSettings


class Settings(ServiceSettings):
    service_name = "members"
    model_config = SettingsConfigDict(env_prefix="MEMBERS_", extra="ignore")

    port: int = 8104
    #: Seconds between sweeps for birthday coupons, levels and rule tags (0: never).
    benefits_sweep_interval: float = 900.0
