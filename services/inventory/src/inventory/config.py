"""Settings of the inventory service (environment prefix ``INVENTORY_``)."""

from pydantic_settings import SettingsConfigDict

from servicekit.settings import ServiceSettings


class Settings(ServiceSettings):
    service_name = "inventory"
    model_config = SettingsConfigDict(env_prefix="INVENTORY_", extra="ignore")

    port: int = 8103
