"""Telemetry every service wires in at startup: OpenTelemetry traces (HTTP, SQL, outbox and Kafka),
Prometheus metrics, and JSON logs carrying trace ids.

Typical wiring in an app factory::

    setup_logging(settings.service_name, settings.log_level, settings.log_format)
    setup_tracing(settings.service_name, settings.otlp_endpoint)
    instrument_app(app)
    instrument_engine(engine)
    instrument_httpx()
    app.add_middleware(PrometheusMiddleware, service=settings.service_name)
    app.add_api_route("/metrics", metrics_endpoint(settings.service_name), include_in_schema=False)
"""

from servicekit.telemetry.logging import (
    ConsoleFormatter,
    JsonFormatter,
    LogFormat,
    TraceContextFilter,
    setup_logging,
)
from servicekit.telemetry.metrics import (
    REGISTRY,
    SCRAPE_HOOK_TIMEOUT_SECONDS,
    UNMATCHED_ROUTE,
    ConsumerOutcome,
    PrometheusMiddleware,
    ScrapeHook,
    consumer_handled_total,
    consumer_handler_errors_total,
    consumer_lag,
    http_request_duration_seconds,
    http_requests_total,
    metrics_endpoint,
    metrics_response,
    outbox_backlog,
    outbox_oldest_age_seconds,
    outbox_publish_errors_total,
    outbox_published_total,
    record_consumer_outcome,
    register_scrape_hook,
    render_metrics,
    run_scrape_hooks,
    saga_instances,
    set_saga_instances,
    unregister_scrape_hook,
)
from servicekit.telemetry.tracing import (
    DEFAULT_EXCLUDED_URLS,
    headers_from_kafka,
    instrument_app,
    instrument_engine,
    instrument_httpx,
    kafka_headers,
    outbox_headers,
    process_span,
    publish_span,
    setup_tracing,
)

__all__ = [
    "DEFAULT_EXCLUDED_URLS",
    "REGISTRY",
    "SCRAPE_HOOK_TIMEOUT_SECONDS",
    "UNMATCHED_ROUTE",
    "ConsoleFormatter",
    "ConsumerOutcome",
    "JsonFormatter",
    "LogFormat",
    "PrometheusMiddleware",
    "ScrapeHook",
    "TraceContextFilter",
    "consumer_handled_total",
    "consumer_handler_errors_total",
    "consumer_lag",
    "headers_from_kafka",
    "http_request_duration_seconds",
    "http_requests_total",
    "instrument_app",
    "instrument_engine",
    "instrument_httpx",
    "kafka_headers",
    "metrics_endpoint",
    "metrics_response",
    "outbox_backlog",
    "outbox_headers",
    "outbox_oldest_age_seconds",
    "outbox_publish_errors_total",
    "outbox_published_total",
    "process_span",
    "publish_span",
    "record_consumer_outcome",
    "register_scrape_hook",
    "render_metrics",
    "run_scrape_hooks",
    "saga_instances",
    "set_saga_instances",
    "setup_logging",
    "setup_tracing",
    "unregister_scrape_hook",
]
