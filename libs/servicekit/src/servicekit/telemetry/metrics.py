"""Prometheus metrics: the metrics every service exposes, the HTTP middleware that records the
request metrics, and the ``/metrics`` endpoint.

Design: the metrics are module-level singletons in one module-level registry (``REGISTRY``), and
every series carries a ``service`` label. Several apps can therefore live in one process (the test
suite, the single-process local stack) without "Duplicated timeseries" errors, and code records a
metric without holding a per-service object: ``outbox_backlog.labels(service=name).set(n)``. Each
app's ``/metrics`` (``metrics_endpoint(service)``) shows only its own service's series plus the
process-wide ones (CPU, memory, GC), so a scrape of one app never reports another's numbers.

Gauges that mirror database state (outbox backlog, saga instances) are refreshed at scrape time by
hooks registered with ``register_scrape_hook``; the endpoint awaits them before rendering, so an
async database query can run per scrape without a background task.

The registry does not emit the ``*_created`` series prometheus-client adds to counters and
histograms by default: they double the series count and no dashboard here reads them.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Final, Literal

import prometheus_client
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.metrics_core import Metric
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "REGISTRY",
    "SCRAPE_HOOK_TIMEOUT_SECONDS",
    "UNMATCHED_ROUTE",
    "ConsumerOutcome",
    "PrometheusMiddleware",
    "ScrapeHook",
    "consumer_handled_total",
    "consumer_handler_errors_total",
    "consumer_lag",
    "consumer_restarts_total",
    "consumer_stuck",
    "http_request_duration_seconds",
    "http_requests_total",
    "metrics_endpoint",
    "metrics_response",
    "outbox_backlog",
    "outbox_log_audits_total",
    "outbox_oldest_age_seconds",
    "outbox_parked",
    "outbox_publish_errors_total",
    "outbox_published_total",
    "outbox_republished_total",
    "record_consumer_outcome",
    "register_scrape_hook",
    "render_metrics",
    "run_scrape_hooks",
    "saga_instances",
    "set_saga_instances",
    "unregister_scrape_hook",
]

_log = logging.getLogger(__name__)

prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

REGISTRY: Final = CollectorRegistry(auto_describe=True)
prometheus_client.ProcessCollector(registry=REGISTRY)
prometheus_client.PlatformCollector(registry=REGISTRY)
prometheus_client.GCCollector(registry=REGISTRY)

http_requests_total: Final = Counter(
    "http_requests_total",
    "HTTP requests served, by route template and status code.",
    ["service", "method", "route", "status"],
    registry=REGISTRY,
)
http_request_duration_seconds: Final = Histogram(
    "http_request_duration_seconds",
    "Time from receiving an HTTP request to sending the end of its response.",
    ["service", "method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=REGISTRY,
)
outbox_backlog: Final = Gauge(
    "outbox_backlog",
    "Outbox rows not yet published.",
    ["service"],
    registry=REGISTRY,
)
outbox_oldest_age_seconds: Final = Gauge(
    "outbox_oldest_age_seconds",
    "Age of the oldest unpublished outbox row (0 when none).",
    ["service"],
    registry=REGISTRY,
)
outbox_published_total: Final = Counter(
    "outbox_published_total",
    "Outbox rows published to Kafka.",
    ["service", "topic"],
    registry=REGISTRY,
)
outbox_publish_errors_total: Final = Counter(
    "outbox_publish_errors_total",
    "Failed attempts to publish outbox rows.",
    ["service"],
    registry=REGISTRY,
)
consumer_lag: Final = Gauge(
    "consumer_lag",
    "Messages between a consumer group's committed offset and the partition's end.",
    ["service", "group", "topic", "partition"],
    registry=REGISTRY,
)
consumer_handled_total: Final = Counter(
    "consumer_handled_total",
    "Messages handled by a consumer, by outcome (applied, duplicate, failed, dead_lettered).",
    ["service", "group", "event_type", "outcome"],
    registry=REGISTRY,
)
consumer_handler_errors_total: Final = Counter(
    "consumer_handler_errors_total",
    "Exceptions raised by consumer handlers, retried ones included.",
    ["service", "group", "event_type"],
    registry=REGISTRY,
)
outbox_parked: Final = Gauge(
    "countertop_outbox_parked",
    "Outbox rows parked after failing on their own: not published until re-armed.",
    ["service"],
    registry=REGISTRY,
)
outbox_republished_total: Final = Counter(
    "countertop_outbox_republished_total",
    "Sent outbox rows re-armed for publishing because the broker's log no longer held them.",
    ["service", "topic"],
    registry=REGISTRY,
)
outbox_log_audits_total: Final = Counter(
    "countertop_outbox_log_audits_total",
    "Audits of the broker's log against the recorded acknowledgements, by result "
    "(clean, loss, failed).",
    ["service", "result"],
    registry=REGISTRY,
)
consumer_stuck: Final = Gauge(
    "countertop_consumer_stuck",
    "1 while a consumer group cannot make progress (restarting, commits or fetches failing, "
    "no partitions assigned), else 0.",
    ["service", "group"],
    registry=REGISTRY,
)
consumer_restarts_total: Final = Counter(
    "countertop_consumer_restarts_total",
    "Restarts of a consumer by itself, by reason.",
    ["service", "group", "reason"],
    registry=REGISTRY,
)
saga_instances: Final = Gauge(
    "saga_instances",
    "Saga instances by saga and state.",
    ["service", "saga", "state"],
    registry=REGISTRY,
)

ConsumerOutcome = Literal["applied", "duplicate", "failed", "dead_lettered"]


def record_consumer_outcome(
    service: str, group: str, event_type: str, outcome: ConsumerOutcome
) -> None:
    """Count one handled message. The ``Literal`` keeps the outcome label to its four values."""
    consumer_handled_total.labels(
        service=service, group=group, event_type=event_type, outcome=outcome
    ).inc()


# (service) -> the (saga, state) pairs last reported, so states that emptied drop to zero.
_saga_series: dict[str, set[tuple[str, str]]] = {}


def set_saga_instances(service: str, counts: Mapping[tuple[str, str], int]) -> None:
    """Set ``saga_instances`` from a ``{(saga, state): count}`` snapshot (typically a
    ``GROUP BY saga, state`` query in a scrape hook). A pair reported before but missing now is
    set to 0 instead of keeping its last count."""
    previous = _saga_series.get(service, set())
    for saga, state in previous - counts.keys():
        saga_instances.labels(service=service, saga=saga, state=state).set(0)
    for (saga, state), count in counts.items():
        saga_instances.labels(service=service, saga=saga, state=state).set(count)
    _saga_series[service] = previous | set(counts)


# --- HTTP ----------------------------------------------------------------------------------------

UNMATCHED_ROUTE: Final = "unmatched"
_KNOWN_METHODS: Final = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}
)


def _route_template(scope: Scope) -> str:
    # The router stores the matched route in the scope it shares with the middleware; its path is
    # the template ("/orders/{order_id}"), never the raw path, which would make a series per id.
    # Under a Mount the innermost route wins, without the mount's prefix.
    route = scope.get("route")
    if isinstance(route, BaseRoute):
        path = getattr(route, "path", None)
        if isinstance(path, str):
            return path or "/"
    return UNMATCHED_ROUTE


class PrometheusMiddleware:
    """ASGI middleware recording ``http_requests_total`` and ``http_request_duration_seconds``.

    ``app.add_middleware(PrometheusMiddleware, service="orders")``. A pure ASGI middleware (not
    ``BaseHTTPMiddleware``) so streaming responses and context variables pass through untouched.
    A request whose handler raised before responding counts as status 500.
    """

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        status = 500
        started = time.perf_counter()

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            elapsed = time.perf_counter() - started
            method = str(scope.get("method", "")).upper()
            if method not in _KNOWN_METHODS:
                method = "OTHER"
            route = _route_template(scope)
            http_requests_total.labels(
                service=self.service, method=method, route=route, status=str(status)
            ).inc()
            http_request_duration_seconds.labels(
                service=self.service, method=method, route=route
            ).observe(elapsed)


# --- scrape hooks and the endpoint ---------------------------------------------------------------

ScrapeHook = Callable[[], Awaitable[None] | None]
SCRAPE_HOOK_TIMEOUT_SECONDS: Final = 5.0

_scrape_hooks: dict[str, list[ScrapeHook]] = {}


def register_scrape_hook(service: str, hook: ScrapeHook) -> Callable[[], None]:
    """Run ``hook`` before each scrape of ``service``'s ``/metrics``, to refresh gauges from the
    database. ``hook`` is a plain function or an ``async`` one; a sync hook runs on the event loop,
    so it must not block. Registering the same hook twice has no effect.

    Returns a function that unregisters the hook: call it when the app shuts down, or the hook
    outlives the engine it queries (and, with several apps of one service in a process, keeps
    overwriting the live app's gauges).
    """
    hooks = _scrape_hooks.setdefault(service, [])
    if hook not in hooks:
        hooks.append(hook)
    return functools.partial(unregister_scrape_hook, service, hook)


def unregister_scrape_hook(service: str, hook: ScrapeHook) -> None:
    """Stop running ``hook`` (an app shutting down whose engine is about to be disposed)."""
    hooks = _scrape_hooks.get(service, [])
    if hook in hooks:
        hooks.remove(hook)


async def _run_hook(service: str, hook: ScrapeHook, limit_seconds: float) -> None:
    try:
        result = hook()
        if inspect.isawaitable(result):
            async with asyncio.timeout(limit_seconds):
                await result
    except Exception:
        # A broken or slow hook leaves its gauges stale; failing the whole scrape would also hide
        # every other metric exactly when something is wrong.
        _log.warning("metrics scrape hook %r of %s failed", hook, service, exc_info=True)


async def run_scrape_hooks(
    service: str, *, limit_seconds: float = SCRAPE_HOOK_TIMEOUT_SECONDS
) -> None:
    """Run ``service``'s scrape hooks concurrently, each bounded by ``limit_seconds``. A hook that
    fails or overruns is logged and skipped."""
    hooks = list(_scrape_hooks.get(service, ()))
    await asyncio.gather(*(_run_hook(service, hook, limit_seconds) for hook in hooks))


class _ServiceView:
    """The registry seen by one service: samples labelled with another service are left out."""

    def __init__(self, service: str) -> None:
        self.service = service

    def collect(self) -> Iterable[Metric]:
        for family in REGISTRY.collect():
            kept = [
                s for s in family.samples if s.labels.get("service", self.service) == self.service
            ]
            view = Metric(family.name, family.documentation, family.type, family.unit)
            view.samples = kept
            yield view


async def render_metrics(service: str | None = None) -> bytes:
    """Run the scrape hooks and render the registry in the Prometheus text format: ``service``'s
    series and the process-wide ones, or everything when ``service`` is None."""
    if service is None:
        for name in list(_scrape_hooks):
            await run_scrape_hooks(name)
        return generate_latest(REGISTRY)
    await run_scrape_hooks(service)
    return generate_latest(_ServiceView(service))


async def metrics_response(service: str | None = None) -> Response:
    """``render_metrics(service)`` as an HTTP response with the Prometheus content type."""
    return Response(await render_metrics(service), media_type=CONTENT_TYPE_LATEST)


def metrics_endpoint(service: str | None = None) -> Callable[[], Awaitable[Response]]:
    """A route handler serving ``metrics_response(service)``:
    ``app.add_api_route("/metrics", metrics_endpoint("orders"), include_in_schema=False)``."""

    async def metrics() -> Response:
        return await metrics_response(service)

    return metrics
