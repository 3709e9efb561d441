"""OpenTelemetry tracing: the tracer provider, the auto-instrumentations, and trace context carried
through the transactional outbox and Kafka.

A trace starts at the HTTP request that changes business rows. ``outbox_headers`` captures its W3C
trace context into the outbox row; the relay opens ``publish_span`` from that stored context (so the
trace continues even though the publish happens later, in another task) and sends the publish span's
context in the Kafka headers; a consumer opens ``process_span`` from those headers around its
handler. The aiokafka auto-instrumentation is not used on the consumer side because its consumer
span ends before the handler runs.

Every function that creates spans accepts ``tracer_provider`` so tests can use a local provider;
by default the global one is used.
"""

from __future__ import annotations

import functools
import logging
import threading
import weakref
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

from fastapi import FastAPI
from opentelemetry import metrics as otel_metrics
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
)
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = [
    "DEFAULT_EXCLUDED_URLS",
    "headers_from_kafka",
    "instrument_app",
    "instrument_engine",
    "instrument_httpx",
    "kafka_headers",
    "outbox_headers",
    "process_span",
    "publish_span",
    "setup_tracing",
]

_log = logging.getLogger(__name__)

_TRACER_NAME = "servicekit"
# The keys the W3C trace-context propagator writes; stale values are dropped before re-injecting.
_TRACE_CONTEXT_KEYS = frozenset({"traceparent", "tracestate"})
# Probes and scrapes would otherwise produce a trace every few seconds per pod.
DEFAULT_EXCLUDED_URLS = "/healthz,/readyz,/metrics"

_lock = threading.Lock()
_provider: TracerProvider | None = None
_exporting_to: set[str] = set()
_instrumented_engines: weakref.WeakSet[Engine] = weakref.WeakSet()


def _traces_url(endpoint: str) -> str:
    # OTEL_EXPORTER_OTLP_ENDPOINT is the collector's base URL; an exporter given an explicit
    # endpoint uses it verbatim, so the signal path is appended here.
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/v1/traces") else endpoint + "/v1/traces"


def _exporting_processor(endpoint: str) -> BatchSpanProcessor:
    return BatchSpanProcessor(OTLPSpanExporter(endpoint=_traces_url(endpoint)))


class _RecordWhileExporting(Sampler):
    """Record spans only while some exporter will receive them.

    Without an exporter a recorded span is built and thrown away; a dropped one still gets its
    trace and span ids, which logs and outbox rows carry on. An exporter added later (another
    app in the process naming an endpoint) turns recording on.
    """

    _record = ParentBased(ALWAYS_ON)

    def __init__(self) -> None:
        self.exporting = False

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        if self.exporting:
            return self._record.should_sample(
                parent_context, trace_id, name, kind, attributes, links, trace_state
            )
        return SamplingResult(Decision.DROP)

    def get_description(self) -> str:
        return "RecordWhileExporting"


def _build_provider(service_name: str, otlp_endpoint: str | None) -> TracerProvider:
    sampler = _RecordWhileExporting()
    provider = TracerProvider(
        resource=Resource.create({SERVICE_NAME: service_name}), sampler=sampler
    )
    if otlp_endpoint:
        provider.add_span_processor(_exporting_processor(otlp_endpoint))
        sampler.exporting = True
    return provider


def _export_global_to(provider: TracerProvider, endpoint: str) -> None:
    url = _traces_url(endpoint)
    if url not in _exporting_to:
        provider.add_span_processor(_exporting_processor(url))
        _exporting_to.add(url)
        if isinstance(provider.sampler, _RecordWhileExporting):
            provider.sampler.exporting = True


def setup_tracing(service_name: str, otlp_endpoint: str | None = None) -> TracerProvider:
    """Install (once per process) the global tracer provider and return it.

    With ``otlp_endpoint`` (the collector's base URL, as in ``OTEL_EXPORTER_OTLP_ENDPOINT``) spans
    are batched and exported over OTLP/HTTP; without it they are not exported but still get real
    trace and span ids, so logs and outbox rows carry trace context.

    OpenTelemetry lets the global provider be set only once, so a second call (several apps in one
    process) returns the provider already installed, adding the exporter if this call names an
    endpoint the first one did not. The resource keeps the first caller's ``service.name``. A
    provider installed by someone else (the ``opentelemetry-instrument`` launcher, a test) is
    adopted rather than fought.
    """
    global _provider
    with _lock:
        if _provider is None:
            current = trace.get_tracer_provider()
            if not isinstance(current, TracerProvider):
                trace.set_tracer_provider(_build_provider(service_name, None))
                # Re-read: the setter ignores the call if another provider won the race.
                current = trace.get_tracer_provider()
            if not isinstance(current, TracerProvider):
                raise RuntimeError(f"the global tracer provider is a {type(current).__name__}")
            _provider = current
        elif _provider.resource.attributes.get(SERVICE_NAME) != service_name:
            _log.debug("tracing already set up; %s shares the process's provider", service_name)
        if otlp_endpoint:
            _export_global_to(_provider, otlp_endpoint)
        return _provider


@functools.lru_cache(maxsize=32)
def _tracer(tracer_provider: trace.TracerProvider | None) -> trace.Tracer:
    # Looked up once per provider: the relay and consumers open a span per message.
    return trace.get_tracer(_TRACER_NAME, tracer_provider=tracer_provider)


def instrument_app(
    app: FastAPI,
    *,
    tracer_provider: trace.TracerProvider | None = None,
    excluded_urls: str = DEFAULT_EXCLUDED_URLS,
) -> None:
    """Trace every HTTP request served by ``app`` (a SERVER span per request). Idempotent."""
    if getattr(app, "_is_instrumented_by_opentelemetry", False):
        return
    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=tracer_provider,
        excluded_urls=excluded_urls,
        # One span per request, not one per ASGI message.
        exclude_spans=["receive", "send"],
    )


def instrument_engine(
    engine: AsyncEngine, *, tracer_provider: trace.TracerProvider | None = None
) -> None:
    """Trace every SQL statement run through ``engine``. Idempotent per engine.

    The engine is instrumented directly rather than through ``SQLAlchemyInstrumentor().instrument``,
    which works once per process and also patches ``create_engine`` globally: several engines (one
    per app in a test process) would then be traced twice or not at all.
    """
    sync_engine = engine.sync_engine
    with _lock:
        if sync_engine in _instrumented_engines:
            return
        meter = otel_metrics.get_meter("opentelemetry.instrumentation.sqlalchemy")
        connections_usage = meter.create_up_down_counter(
            name="db.client.connections.usage",
            unit="connections",
            description="The number of connections in the state described by the state attribute.",
        )
        # EngineTracer ships without type hints.
        EngineTracer(  # type: ignore[no-untyped-call]
            trace.get_tracer(
                "opentelemetry.instrumentation.sqlalchemy", tracer_provider=tracer_provider
            ),
            sync_engine,
            connections_usage,
        )
        _instrumented_engines.add(sync_engine)


def instrument_httpx(*, tracer_provider: trace.TracerProvider | None = None) -> None:
    """Trace outgoing httpx requests and propagate trace context to the callee. Idempotent."""
    instrumentor = HTTPXClientInstrumentor()
    with _lock:
        if instrumentor.is_instrumented_by_opentelemetry:
            return
        instrumentor.instrument(tracer_provider=tracer_provider)


def outbox_headers() -> dict[str, str]:
    """The current span's trace context (``traceparent``, ``tracestate`` when set), to store in an
    outbox row's ``headers`` column. Empty when no span is active."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def kafka_headers(headers: Mapping[str, str]) -> list[tuple[str, bytes]]:
    """Headers in aiokafka's form. A list, not a tuple: the aiokafka instrumentation only injects
    its own context into a mutable sequence."""
    return [(key, value.encode()) for key, value in headers.items()]


def headers_from_kafka(headers: Sequence[tuple[str, bytes | None]] | None) -> dict[str, str]:
    """A Kafka record's headers as text.

    The first value of a repeated key wins, as in the aiokafka instrumentation's getter (a
    producer-side instrumentation appends its own ``traceparent`` after ours). Null values are
    skipped; undecodable bytes are replaced rather than failing the record.
    """
    result: dict[str, str] = {}
    for key, value in headers or ():
        if value is not None and key not in result:
            result[key] = value.decode("utf-8", errors="replace")
    return result


def _fail_span(span: Span, exc: BaseException) -> None:
    span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
    span.set_attribute("error.type", type(exc).__qualname__)


@contextmanager
def publish_span(
    topic: str,
    key: str | bytes | None,
    headers: Mapping[str, str] | None,
    *,
    message_id: str | None = None,
    tracer_provider: trace.TracerProvider | None = None,
) -> Iterator[dict[str, str]]:
    """A PRODUCER span ``"<topic> publish"`` continuing the trace stored in an outbox row.

    ``headers`` is the row's ``headers`` column; the span's parent is the context extracted from
    it. Yields a copy of those headers whose trace context is the publish span's, to send with the
    Kafka message (through ``kafka_headers``). A failure inside the block marks the span as failed
    and propagates.
    """
    stored = dict(headers or {})
    parent = propagate.extract(stored)
    attributes: dict[str, str] = {
        "messaging.system": "kafka",
        "messaging.destination.name": topic,
        "messaging.operation.type": "send",
        "messaging.operation.name": "publish",
    }
    if key is not None:
        attributes["messaging.kafka.message.key"] = (
            key.decode("utf-8", errors="replace") if isinstance(key, bytes) else key
        )
    if message_id is not None:
        attributes["messaging.message.id"] = message_id
    with _tracer(tracer_provider).start_as_current_span(
        f"{topic} publish",
        context=parent,
        kind=SpanKind.PRODUCER,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        outgoing = {k: v for k, v in stored.items() if k not in _TRACE_CONTEXT_KEYS}
        propagate.inject(outgoing)
        try:
            yield outgoing
        except Exception as exc:
            _fail_span(span, exc)
            raise


@contextmanager
def process_span(
    topic: str,
    event_type: str,
    headers: Mapping[str, str] | None,
    consumer_group: str,
    *,
    partition: int | None = None,
    offset: int | None = None,
    message_id: str | None = None,
    tracer_provider: trace.TracerProvider | None = None,
) -> Iterator[Span]:
    """A CONSUMER span ``"<topic> process"`` around an event handler, child of the context in the
    Kafka message's ``headers`` (see ``headers_from_kafka``), so the handler's own spans (SQL,
    outgoing HTTP, events it writes to its outbox) join the producer's trace.

    An exception raised by the handler is recorded on the span, sets its status to ERROR, and
    propagates.
    """
    parent = propagate.extract(dict(headers or {}))
    attributes: dict[str, str | int] = {
        "messaging.system": "kafka",
        "messaging.destination.name": topic,
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.consumer.group.name": consumer_group,
        "countertop.event.type": event_type,
    }
    if partition is not None:
        attributes["messaging.destination.partition.id"] = str(partition)
    if offset is not None:
        attributes["messaging.kafka.offset"] = offset
    if message_id is not None:
        attributes["messaging.message.id"] = message_id
    with _tracer(tracer_provider).start_as_current_span(
        f"{topic} process",
        context=parent,
        kind=SpanKind.CONSUMER,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield span
        except Exception as exc:
            _fail_span(span, exc)
            raise
