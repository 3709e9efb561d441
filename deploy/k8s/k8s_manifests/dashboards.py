"""The Grafana dashboards: system overview, event bus, payments, and one per service."""

from __future__ import annotations

from typing import Any

from k8s_manifests.model import Service


class Dashboard:
    """A Grafana dashboard of timeseries panels on the ``prometheus`` datasource variable."""

    def __init__(self, uid: str, title: str) -> None:
        self.uid = uid
        self.title = title
        self.panels: list[dict[str, Any]] = []
        self._y = 0
        self._x = 0

    def panel(self, title: str, unit: str, *targets: tuple[str, str], width: int = 12) -> None:
        if self._x + width > 24:
            self._x = 0
            self._y += 8
        self.panels.append(
            {
                "id": len(self.panels) + 1,
                "type": "timeseries",
                "title": title,
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "gridPos": {"h": 8, "w": width, "x": self._x, "y": self._y},
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "targets": [
                    {"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend}
                    for i, (expr, legend) in enumerate(targets)
                ],
            }
        )
        self._x += width

    def render(self) -> dict[str, Any]:
        variables: list[dict[str, Any]] = [
            {
                "name": "datasource",
                "type": "datasource",
                "query": "prometheus",
                "current": {},
                "hide": 0,
            }
        ]
        return {
            "uid": self.uid,
            "title": self.title,
            "tags": ["countertop"],
            "timezone": "utc",
            "schemaVersion": 39,
            "version": 1,
            "editable": False,
            "time": {"from": "now-3h", "to": "now"},
            "refresh": "30s",
            "templating": {"list": variables},
            "panels": self.panels,
        }


OPS_ROUTES = 'route!~"/healthz|/readyz|/metrics"'


def dashboards(services: list[Service]) -> dict[str, dict[str, Any]]:
    overview = Dashboard("countertop-overview", "Countertop / System overview")
    overview.panel(
        "Checkouts per second (orders placed)",
        "reqps",
        (
            'sum(rate(http_requests_total{service="orders",method="POST",route="/v1/orders",'
            'status=~"2.."}[5m]))',
            "orders placed",
        ),
        (
            'sum(rate(consumer_handled_total{service="orders",'
            'event_type="payments.payment.succeeded",outcome="applied"}[5m]))',
            "payments applied to orders",
        ),
    )
    overview.panel(
        "Requests per second by service",
        "reqps",
        (f"sum by (service) (rate(http_requests_total{{{OPS_ROUTES}}}[5m]))", "{{service}}"),
    )
    overview.panel(
        "p99 latency by service",
        "s",
        (
            "histogram_quantile(0.99, sum by (service, le) "
            f"(rate(http_request_duration_seconds_bucket{{{OPS_ROUTES}}}[5m])))",
            "{{service}}",
        ),
    )
    overview.panel(
        "5xx ratio by service",
        "percentunit",
        (
            'sum by (service) (rate(http_requests_total{status=~"5.."}[5m])) / '
            "sum by (service) (rate(http_requests_total[5m]))",
            "{{service}}",
        ),
    )
    overview.panel(
        "Client errors (4xx) by service",
        "reqps",
        ('sum by (service) (rate(http_requests_total{status=~"4.."}[5m]))', "{{service}}"),
    )
    overview.panel(
        "Process memory by service",
        "bytes",
        ("sum by (service, pod) (process_resident_memory_bytes)", "{{pod}}"),
    )

    bus = Dashboard("countertop-event-bus", "Countertop / Event bus")
    bus.panel(
        "Outbox backlog (unsent rows)",
        "short",
        ("max by (service) (outbox_backlog)", "{{service}}"),
    )
    bus.panel(
        "Oldest unsent outbox row",
        "s",
        ("max by (service) (outbox_oldest_age_seconds)", "{{service}}"),
    )
    bus.panel(
        "Published events per second by topic",
        "ops",
        ("sum by (topic) (rate(outbox_published_total[5m]))", "{{topic}}"),
    )
    bus.panel(
        "Relay publish errors",
        "ops",
        ("sum by (service) (rate(outbox_publish_errors_total[5m]))", "{{service}}"),
    )
    bus.panel(
        "Parked outbox rows",
        "short",
        ("max by (service) (countertop_outbox_parked)", "{{service}}"),
    )
    bus.panel(
        "Consumer lag by group",
        "short",
        ("max by (group, topic, partition) (consumer_lag)", "{{group}} {{topic}}/{{partition}}"),
    )
    bus.panel(
        "Handled messages by group and outcome",
        "ops",
        (
            "sum by (group, outcome) (rate(consumer_handled_total[5m]))",
            "{{group}} {{outcome}}",
        ),
    )
    bus.panel(
        "Dead-lettered messages",
        "short",
        (
            'sum by (group, event_type) (increase(consumer_handled_total{outcome="dead_lettered"}'
            "[1h]))",
            "{{group}} {{event_type}}",
        ),
    )
    bus.panel(
        "Handler errors (retried included)",
        "ops",
        (
            "sum by (group, event_type) (rate(consumer_handler_errors_total[5m]))",
            "{{group}} {{event_type}}",
        ),
    )
    bus.panel(
        "Stuck consumer groups",
        "short",
        ("max by (service, group) (countertop_consumer_stuck)", "{{group}}"),
    )

    pay = Dashboard("countertop-payments", "Countertop / Payments")
    outcomes = "succeeded|failed|refunded"
    pay.panel(
        "Payment outcomes per second (as applied by orders)",
        "ops",
        (
            'sum by (event_type) (rate(consumer_handled_total{service="orders",'
            f'event_type=~"payments.payment.({outcomes})",outcome="applied"}}[5m]))',
            "{{event_type}}",
        ),
    )
    pay.panel(
        "Payment failure ratio",
        "percentunit",
        (
            'sum(rate(consumer_handled_total{service="orders",'
            'event_type="payments.payment.failed",outcome="applied"}[15m])) / '
            'sum(rate(consumer_handled_total{service="orders",'
            'event_type=~"payments.payment.(succeeded|failed)",outcome="applied"}[15m]))',
            "failed / (succeeded + failed)",
        ),
    )
    pay.panel(
        "Payments completed in the last 15 minutes, by method and status",
        "short",
        (
            "max by (method, status) (countertop_payments_recent)",
            "{{method}} {{status}}",
        ),
    )
    pay.panel(
        "Failure ratio by method (last 15 minutes)",
        "percentunit",
        (
            'max by (method) (countertop_payments_recent{status="failed"}) / '
            "max by (method) (countertop_payments_recent)",
            "{{method}}",
        ),
    )
    pay.panel(
        "Fees charged in the last 15 minutes (minor units)",
        "short",
        (
            "max by (method, currency) (countertop_payments_recent_fees_minor)",
            "{{method}} {{currency}}",
        ),
    )
    pay.panel(
        "Oldest payment waiting for its provider",
        "s",
        ("max(countertop_payments_pending_oldest_age_seconds)", "oldest pending"),
    )
    pay.panel(
        "Payment API requests by route and status",
        "reqps",
        (
            'sum by (method, route, status) (rate(http_requests_total{service="payments",'
            'route=~"/v1/payments.*"}[5m]))',
            "{{method}} {{route}} {{status}}",
        ),
    )
    pay.panel(
        "Provider notifications by status",
        "reqps",
        (
            'sum by (status) (rate(http_requests_total{service="payments",'
            'route="/v1/providers/{provider}/notify"}[5m]))',
            "{{status}}",
        ),
    )
    pay.panel(
        "Payments published",
        "ops",
        ('sum(rate(outbox_published_total{topic="payments.payment"}[5m]))', "payments.payment"),
    )
    pay.panel(
        "p99 latency of taking a payment",
        "s",
        (
            "histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket"
            '{service="payments",method="POST",route="/v1/payments"}[5m])))',
            "POST /v1/payments",
        ),
    )

    out = {
        "overview": overview.render(),
        "event-bus": bus.render(),
        "payments": pay.render(),
    }
    for svc in services:
        board = Dashboard(f"countertop-service-{svc.name}", f"Countertop / Service / {svc.name}")
        sel = f'service="{svc.name}"'
        board.panel(
            "Requests per second by route",
            "reqps",
            (
                f"sum by (method, route) (rate(http_requests_total{{{sel},{OPS_ROUTES}}}[5m]))",
                "{{method}} {{route}}",
            ),
            width=24,
        )
        board.panel(
            "p99 latency by route",
            "s",
            (
                "histogram_quantile(0.99, sum by (route, le) (rate("
                f"http_request_duration_seconds_bucket{{{sel},{OPS_ROUTES}}}[5m])))",
                "{{route}}",
            ),
        )
        board.panel(
            "Responses by status",
            "reqps",
            (f"sum by (status) (rate(http_requests_total{{{sel}}}[5m]))", "{{status}}"),
        )
        board.panel(
            "Outbox backlog and oldest row",
            "short",
            (f"max(outbox_backlog{{{sel}}})", "backlog"),
            (f"max(outbox_oldest_age_seconds{{{sel}}})", "oldest (s)"),
        )
        board.panel(
            "Published events by topic",
            "ops",
            (f"sum by (topic) (rate(outbox_published_total{{{sel}}}[5m]))", "{{topic}}"),
        )
        if svc.consumers:
            board.panel(
                "Consumer lag by group",
                "short",
                (f"sum by (group) (consumer_lag{{{sel}}})", "{{group}}"),
            )
            board.panel(
                "Handled messages by outcome",
                "ops",
                (
                    f"sum by (group, outcome) (rate(consumer_handled_total{{{sel}}}[5m]))",
                    "{{group}} {{outcome}}",
                ),
            )
        if svc.name == "device-gateway":
            board.panel(
                "Open device alerts by kind",
                "short",
                ("max by (kind) (countertop_device_alerts_open)", "{{kind}}"),
            )
            board.panel(
                "Print jobs by state, and the oldest waiting",
                "short",
                ("max by (state) (countertop_print_jobs)", "{{state}}"),
                ("max(countertop_print_jobs_oldest_queued_age_seconds)", "oldest waiting (s)"),
            )
        board.panel(
            "CPU seconds per second by pod",
            "short",
            (f"sum by (pod) (rate(process_cpu_seconds_total{{{sel}}}[5m]))", "{{pod}}"),
        )
        board.panel(
            "Resident memory by pod",
            "bytes",
            (f"max by (pod) (process_resident_memory_bytes{{{sel}}})", "{{pod}}"),
        )
        out[f"service-{svc.name}"] = board.render()
    return out
