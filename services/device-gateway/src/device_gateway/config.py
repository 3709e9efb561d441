"""Settings of the device-gateway service (environment prefix ``DEVICE_GATEWAY_``)."""

from pydantic_settings import SettingsConfigDict

from servicekit.settings import ServiceSettings


class Settings(ServiceSettings):
    service_name = "device-gateway"
    model_config = SettingsConfigDict(env_prefix="DEVICE_GATEWAY_", extra="ignore")

    port: int = 8106
