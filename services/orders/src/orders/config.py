"""Settings of the orders service (environment prefix ``ORDERS_``)."""

from pydantic_settings import SettingsConfigDict

from servicekit.settings import ServiceSettings


class Settings(ServiceSettings):
    service_name = "orders"
    model_config = SettingsConfigDict(env_prefix="ORDERS_", extra="ignore")

    port: int = 8102
