"""Settings of the members service (environment prefix ``MEMBERS_``)."""

from pydantic_settings import SettingsConfigDict

from servicekit.settings import ServiceSettings


class Settings(ServiceSettings):
    service_name = "members"
    model_config = SettingsConfigDict(env_prefix="MEMBERS_", extra="ignore")

    port: int = 8104
