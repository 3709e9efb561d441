"""Settings of the inventory service (environment prefix ``INVENTORY_``)."""

from pydantic_settings import SettingsConfigDict

from servicekit.settings import ServiceSettings


class Settings(ServiceSettings):
    service_name = "inventory"
    model_config = SettingsConfigDict(env_prefix="INVENTORY_", extra="ignore")

    port: int = 8103
    #: Seconds a request naming a store identity has not announced yet waits for the store
    #: to reach the replica before answering 404 (a store created a moment ago).
    store_replica_wait: float = 1.0
    #: Seconds between two looks for scheduled price changes that have fallen due.
    price_change_interval: float = 30.0
    #: Seconds between two looks for product imports waiting to be applied.
    import_poll_interval: float = 1.0
