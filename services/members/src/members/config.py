"""Settings of the members service (environment prefix ``MEMBERS_``)."""

from pydantic_settings import SettingsConfigDict

from servicekit.settings import ServiceSettings


class Settings(ServiceSettings):
    service_name = "members"
    model_config = SettingsConfigDict(env_prefix="MEMBERS_", extra="ignore")

    port: int = 8104
    #: Seconds between looks for a member import to apply, when none is running.
    import_poll_interval: float = 10.0
    #: Rows of a member import applied per transaction.
    import_chunk_rows: int = 200
    #: Seconds between sweeps for birthday coupons, levels and rule tags (0: never).
    benefits_sweep_interval: float = 900.0
