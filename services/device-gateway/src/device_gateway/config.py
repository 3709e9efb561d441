"""Settings of the device-gateway service (environment prefix ``DEVICE_GATEWAY_``)."""

from pydantic_settings import SettingsConfigDict

from servicekit.settings import ServiceSettings


class Settings(ServiceSettings):
    service_name = "device-gateway"
    model_config = SettingsConfigDict(env_prefix="DEVICE_GATEWAY_", extra="ignore")

    port: int = 8106

    # Printing: a job is tried on every printer of its station (failover) per attempt, then
    # retried with exponential backoff; after the last attempt it fails and raises an alert.
    print_max_attempts: int = 5
    print_retry_backoff: float = 1.0
    print_retry_backoff_max: float = 60.0
    print_connect_timeout: float = 2.0
    print_status_timeout: float = 0.3
    # A job sent but never confirmed (the gateway died mid-send) is tried again after this.
    print_lease_seconds: float = 30.0
    # A fallback only: the dispatcher wakes on NOTIFY and when a retry it scheduled is due.
    print_poll_interval: float = 5.0
    print_workers: int = 4
    run_printing: bool = True

    # MQTT bridge.
    run_mqtt_bridge: bool = True
    mqtt_client_id: str = "countertop-device-gateway"
    mqtt_reconnect_backoff: float = 0.5
    mqtt_reconnect_backoff_max: float = 15.0
    # A command sent but not acknowledged is sent again after this many seconds.
    command_resend_seconds: float = 10.0
    # A fallback only: the sender wakes on NOTIFY and when a command it sent is due again.
    command_poll_interval: float = 5.0

    # Alerts: a bound device offline for this long raises an ``offline`` alert.
    offline_alert_minutes: float = 5.0
    alert_check_interval: float = 30.0

    # Kitchen display feed: how often an idle stream looks for changes and sends a keep-alive.
    kds_poll_interval: float = 0.5
    kds_keepalive_seconds: float = 15.0

    # The QR code printed on receipts (e-invoice or member sign-up); ``{order_id}`` is filled in.
    receipt_qr_template: str | None = None
