"""Telemetry: trace context through HTTP, the outbox and Kafka; HTTP and scrape-time metrics; JSON
logs carrying trace ids; setup functions safe to call twice."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode, format_span_id, format_trace_id
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from servicekit.telemetry import (
    REGISTRY,
    PrometheusMiddleware,
    consumer_handled_total,
    headers_from_kafka,
    instrument_app,
    instrument_engine,
    instrument_httpx,
    kafka_headers,
    metrics_endpoint,
    outbox_backlog,
    outbox_headers,
    outbox_oldest_age_seconds,
    process_span,
    publish_span,
    record_consumer_outcome,
    register_scrape_hook,
    run_scrape_hooks,
    set_saga_instances,
    setup_logging,
    setup_tracing,
)
from servicekit.telemetry import tracing as tracing_module


@pytest.fixture
def spans() -> tuple[TracerProvider, InMemorySpanExporter]:
    # The global provider can be set once per process; these tests use their own.
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def _one(finished: tuple[ReadableSpan, ...], name: str) -> ReadableSpan:
    matching = [s for s in finished if s.name == name]
    assert len(matching) == 1, [s.name for s in finished]
    return matching[0]


def _service() -> str:
    return f"svc-{uuid.uuid4().hex[:8]}"


# --- tracing -------------------------------------------------------------------------------------


async def test_trace_runs_from_request_through_outbox_and_kafka_to_handler(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    app = FastAPI()
    stored: list[dict[str, str]] = []

    @app.post("/orders")
    async def create_order() -> dict[str, str]:
        stored.append(outbox_headers())
        return {"status": "created"}

    instrument_app(app, tracer_provider=provider)
    instrument_app(app, tracer_provider=provider)  # a second call must not double the spans
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as client:
        response = await client.post("/orders")
    assert response.status_code == 200
    request = _one(exporter.get_finished_spans(), "POST /orders")
    assert request.kind is SpanKind.SERVER
    assert request.context is not None
    row_headers = stored[0]
    version, trace_id, parent_id, flags = row_headers["traceparent"].split("-")
    assert (version, trace_id, parent_id) == (
        "00",
        format_trace_id(request.context.trace_id),
        format_span_id(request.context.span_id),
    )
    assert int(flags, 16) & 0x01  # sampled

    # The relay, later and in another task: the row's headers plus a custom one.
    await asyncio.sleep(0)
    with publish_span(
        "orders.order",
        "order-1",
        {**row_headers, "event_type": "OrderCreated"},
        message_id="evt-1",
        tracer_provider=provider,
    ) as outgoing:
        message_headers = kafka_headers(outgoing)
    publish = _one(exporter.get_finished_spans(), "orders.order publish")
    assert publish.kind is SpanKind.PRODUCER
    assert publish.context is not None
    assert publish.parent is not None
    assert publish.context.trace_id == request.context.trace_id
    assert publish.parent.span_id == request.context.span_id
    assert publish.attributes is not None
    assert publish.attributes["messaging.destination.name"] == "orders.order"
    assert publish.attributes["messaging.kafka.message.key"] == "order-1"
    assert publish.attributes["messaging.message.id"] == "evt-1"
    # The message carries the publish span's context, not the stored one; other headers stay.
    assert outgoing["event_type"] == "OrderCreated"
    assert outgoing["traceparent"] != row_headers["traceparent"]
    assert format_span_id(publish.context.span_id) in outgoing["traceparent"]
    assert isinstance(message_headers, list)

    # The consumer, from the headers of the Kafka record.
    with process_span(
        "orders.order",
        "OrderCreated",
        headers_from_kafka(message_headers),
        "inventory.orders",
        partition=2,
        offset=41,
        tracer_provider=provider,
    ):
        handler_trace = trace.get_current_span().get_span_context().trace_id
    process = _one(exporter.get_finished_spans(), "orders.order process")
    assert process.kind is SpanKind.CONSUMER
    assert process.parent is not None
    assert process.context is not None
    assert process.context.trace_id == request.context.trace_id == handler_trace
    assert process.parent.span_id == publish.context.span_id
    assert process.attributes is not None
    assert process.attributes["messaging.system"] == "kafka"
    assert process.attributes["messaging.operation.type"] == "process"
    assert process.attributes["messaging.consumer.group.name"] == "inventory.orders"
    assert process.attributes["messaging.destination.partition.id"] == "2"
    assert process.attributes["messaging.kafka.offset"] == 41
    assert process.attributes["countertop.event.type"] == "OrderCreated"
    assert process.status.status_code is not StatusCode.ERROR


def test_process_span_records_a_failing_handler(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    with (
        pytest.raises(ValueError, match="stock went negative"),
        process_span("inventory.stock", "StockMoved", {}, "orders.stock", tracer_provider=provider),
    ):
        raise ValueError("stock went negative")
    span = _one(exporter.get_finished_spans(), "inventory.stock process")
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "ValueError: stock went negative"
    assert [e.name for e in span.events] == ["exception"]
    assert span.attributes is not None
    assert span.attributes["error.type"] == "ValueError"
    # No context in the headers: the handler starts a trace of its own.
    assert span.parent is None


def test_publish_span_marks_a_failed_send(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    with (
        pytest.raises(ConnectionError),
        publish_span("orders.order", b"k", None, tracer_provider=provider),
    ):
        raise ConnectionError("broker down")
    span = _one(exporter.get_finished_spans(), "orders.order publish")
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None
    assert span.attributes["messaging.kafka.message.key"] == "k"


def test_kafka_header_conversions() -> None:
    headers = kafka_headers({"traceparent": "00-ab-cd-01", "event_type": "Café"})
    assert headers == [("traceparent", b"00-ab-cd-01"), ("event_type", "Café".encode())]
    assert isinstance(headers, list)
    assert headers_from_kafka(headers) == {"traceparent": "00-ab-cd-01", "event_type": "Café"}
    # aiokafka gives a tuple; a repeated key keeps its first value; nulls are dropped.
    record_headers = (("traceparent", b"first"), ("traceparent", b"second"), ("x", None))
    assert headers_from_kafka(record_headers) == {"traceparent": "first"}
    assert headers_from_kafka(None) == {}
    assert headers_from_kafka([("bad", b"\xff")]) == {"bad": "\ufffd"}


def test_outbox_headers_are_empty_without_a_span() -> None:
    assert outbox_headers() == {}


def test_setup_tracing_twice_returns_the_one_global_provider() -> None:
    first = setup_tracing("orders", None)
    second = setup_tracing("inventory", None)
    assert first is second
    assert trace.get_tracer_provider() is first
    # Without an exporter, spans still get ids that reach the outbox row.
    with trace.get_tracer("test").start_as_current_span("request") as span:
        headers = outbox_headers()
    assert span.get_span_context().is_valid
    assert format_trace_id(span.get_span_context().trace_id) in headers["traceparent"]


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@contextlib.contextmanager
def _local_http_server() -> Iterator[tuple[str, list[Received]]]:
    """A loopback HTTP server recording every request and answering 200 with no body."""
    received: list[Received] = []

    class Recorder(BaseHTTPRequestHandler):
        def _record(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            headers = {k.lower(): v for k, v in self.headers.items()}
            received.append(Received(self.command, self.path, headers, body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = _record

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_otlp_exporter_posts_spans_to_the_collector() -> None:
    with _local_http_server() as (base_url, received):
        provider = tracing_module._build_provider("payments", base_url + "/")
        with provider.get_tracer("test").start_as_current_span("charge") as span:
            span.set_attribute("payment.method", "cash")
        assert provider.force_flush(timeout_millis=10_000)
        provider.shutdown()
    (export,) = received
    assert (export.method, export.path) == ("POST", "/v1/traces")
    assert export.headers["content-type"] == "application/x-protobuf"
    request = ExportTraceServiceRequest.FromString(export.body)
    resource = request.resource_spans[0].resource
    service = {a.key: a.value.string_value for a in resource.attributes}["service.name"]
    assert service == "payments"
    assert request.resource_spans[0].scope_spans[0].spans[0].name == "charge"


async def test_instrument_httpx_propagates_trace_context_to_the_callee(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    instrumentor = HTTPXClientInstrumentor()
    # The instrumentation is process-wide: borrow it from whoever set it up, give it back after.
    borrowed = instrumentor.is_instrumented_by_opentelemetry
    if borrowed:
        instrumentor.uninstrument()
    instrument_httpx(tracer_provider=provider)
    instrument_httpx(tracer_provider=provider)
    try:
        with _local_http_server() as (base_url, received):
            with provider.get_tracer("test").start_as_current_span("handler"):
                async with httpx.AsyncClient() as client:
                    response = await client.get(base_url + "/jwks")
            assert response.status_code == 200
    finally:
        instrumentor.uninstrument()
        if borrowed:
            instrument_httpx()
    client_span = _one(exporter.get_finished_spans(), "GET")
    assert client_span.kind is SpanKind.CLIENT
    assert client_span.context is not None
    (call,) = received
    _, trace_id, parent_id, _ = call.headers["traceparent"].split("-")
    assert trace_id == format_trace_id(client_span.context.trace_id)
    assert parent_id == format_span_id(client_span.context.span_id)


async def test_instrument_engine_traces_each_statement_once(
    spans: tuple[TracerProvider, InMemorySpanExporter],
    create_database: Callable[..., Awaitable[str]],
) -> None:
    provider, exporter = spans
    started: list[str] = []

    class CountStarts(SpanProcessor):
        def on_start(self, span: Span, parent_context: Context | None = None) -> None:
            started.append(span.name)

    # Instrumenting twice would start a second span per statement and never end it, so the
    # finished spans alone cannot show it.
    provider.add_span_processor(CountStarts())
    url = await create_database("telemetry")
    engine = create_async_engine(url)
    try:
        instrument_engine(engine, tracer_provider=provider)
        instrument_engine(engine, tracer_provider=provider)
        with provider.get_tracer("test").start_as_current_span("handler") as parent:
            async with engine.connect() as conn:
                assert (await conn.execute(text("SELECT 41 + 1"))).scalar_one() == 42
    finally:
        await engine.dispose()
    selects = [s for s in exporter.get_finished_spans() if s.name.startswith("SELECT")]
    assert len(selects) == 1
    assert [name for name in started if name.startswith("SELECT")] == [selects[0].name]
    assert selects[0].parent is not None
    assert selects[0].parent.span_id == parent.get_span_context().span_id
    assert selects[0].kind is SpanKind.CLIENT


# --- metrics -------------------------------------------------------------------------------------


def _metrics_app(service: str) -> FastAPI:
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def get_item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("handler failed")

    app.add_middleware(PrometheusMiddleware, service=service)
    app.add_api_route("/metrics", metrics_endpoint(service), include_in_schema=False)
    return app


@pytest.fixture
async def client_for() -> AsyncIterator[list[httpx.AsyncClient]]:
    clients: list[httpx.AsyncClient] = []
    yield clients
    for client in clients:
        await client.aclose()


def _client(app: FastAPI, clients: list[httpx.AsyncClient]) -> httpx.AsyncClient:
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
        base_url="http://test",
    )
    clients.append(client)
    return client


def _requests(service: str, route: str, status: str, method: str = "GET") -> float | None:
    return REGISTRY.get_sample_value(
        "http_requests_total",
        {"service": service, "method": method, "route": route, "status": status},
    )


async def test_middleware_counts_requests_by_route_template(
    client_for: list[httpx.AsyncClient],
) -> None:
    service = _service()
    client = _client(_metrics_app(service), client_for)
    assert (await client.get("/items/1")).status_code == 200
    assert (await client.get("/items/2")).status_code == 200
    assert (await client.get("/nowhere/3")).status_code == 404
    assert (await client.get("/boom")).status_code == 500
    assert (await client.request("BREW", "/items/1")).status_code == 405

    assert _requests(service, "/items/{item_id}", "200") == 2
    assert _requests(service, "/items/1", "200") is None
    assert _requests(service, "unmatched", "404") == 1
    assert _requests(service, "/boom", "500") == 1
    assert _requests(service, "/items/{item_id}", "405", method="OTHER") == 1
    duration_count = REGISTRY.get_sample_value(
        "http_request_duration_seconds_count",
        {"service": service, "method": "GET", "route": "/items/{item_id}"},
    )
    assert duration_count == 2

    # A second app of the same service in this process shares the series instead of failing.
    again = _client(_metrics_app(service), client_for)
    assert (await again.get("/items/3")).status_code == 200
    assert _requests(service, "/items/{item_id}", "200") == 3


async def test_metrics_endpoint_runs_scrape_hooks_and_shows_only_its_service(
    client_for: list[httpx.AsyncClient],
) -> None:
    service, other = _service(), _service()
    calls: list[str] = []

    async def count_backlog() -> None:
        await asyncio.sleep(0)  # stands in for the database query
        calls.append("backlog")
        outbox_backlog.labels(service=service).set(7)

    def oldest_age() -> None:
        outbox_oldest_age_seconds.labels(service=service).set(12.5)

    def broken() -> None:
        raise RuntimeError("database unreachable")

    unregister = register_scrape_hook(service, count_backlog)
    register_scrape_hook(service, count_backlog)  # registering twice runs it once
    register_scrape_hook(service, oldest_age)
    register_scrape_hook(service, broken)
    outbox_backlog.labels(service=other).set(99)
    client = _client(_metrics_app(service), client_for)
    await client.get("/items/5")

    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPE_LATEST
    body = response.text
    assert f'outbox_backlog{{service="{service}"}} 7.0' in body
    assert f'outbox_oldest_age_seconds{{service="{service}"}} 12.5' in body
    assert (
        'http_requests_total{method="GET",route="/items/{item_id}",'
        f'service="{service}",status="200"}} 1.0'
    ) in body
    assert other not in body
    assert "process_cpu_seconds_total" in body
    assert "_created" not in body
    assert calls == ["backlog"]

    unregister()
    await client.get("/metrics")
    assert calls == ["backlog"]


async def test_a_hanging_scrape_hook_is_abandoned() -> None:
    service = _service()
    never = asyncio.Event()

    async def hangs() -> None:
        await never.wait()

    def quick() -> None:
        outbox_backlog.labels(service=service).set(3)

    register_scrape_hook(service, hangs)
    register_scrape_hook(service, quick)
    started = time.monotonic()
    await run_scrape_hooks(service, limit_seconds=0.05)
    assert time.monotonic() - started < 2
    assert REGISTRY.get_sample_value("outbox_backlog", {"service": service}) == 3


def test_saga_gauge_drops_states_that_emptied() -> None:
    service = _service()
    set_saga_instances(service, {("entity_migration", "running"): 2, ("rebind", "done"): 1})
    set_saga_instances(service, {("entity_migration", "done"): 2, ("rebind", "done"): 1})

    def value(saga: str, state: str) -> float | None:
        labels = {"service": service, "saga": saga, "state": state}
        return REGISTRY.get_sample_value("saga_instances", labels)

    assert value("entity_migration", "running") == 0
    assert value("entity_migration", "done") == 2
    assert value("rebind", "done") == 1


def test_consumer_outcomes_are_counted() -> None:
    service = _service()
    record_consumer_outcome(service, f"{service}.orders", "OrderPaid", "applied")
    record_consumer_outcome(service, f"{service}.orders", "OrderPaid", "duplicate")
    record_consumer_outcome(service, f"{service}.orders", "OrderPaid", "applied")
    labels = {"service": service, "group": f"{service}.orders", "event_type": "OrderPaid"}
    assert (
        REGISTRY.get_sample_value("consumer_handled_total", {**labels, "outcome": "applied"}) == 2
    )
    consumer_handled_total.labels(**labels, outcome="dead_lettered").inc()
    assert (
        REGISTRY.get_sample_value("consumer_handled_total", {**labels, "outcome": "dead_lettered"})
        == 1
    )


# --- logging -------------------------------------------------------------------------------------

_WATCHED_LOGGERS = ("", "uvicorn", "uvicorn.error", "uvicorn.access")


@pytest.fixture
def restore_logging() -> Iterator[None]:
    saved = {
        name: (list(lg.handlers), lg.level, lg.propagate)
        for name in _WATCHED_LOGGERS
        for lg in [logging.getLogger(name)]
    }
    yield
    for name, (handlers, level, propagate) in saved.items():
        lg = logging.getLogger(name)
        for handler in list(lg.handlers):
            if handler not in handlers:
                lg.removeHandler(handler)
                handler.close()
        for handler in handlers:
            if handler not in lg.handlers:
                lg.addHandler(handler)
        lg.setLevel(level)
        lg.propagate = propagate


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest.mark.usefixtures("restore_logging")
def test_json_log_lines_carry_trace_ids_extras_and_exceptions(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, _ = spans
    stream = io.StringIO()
    setup_logging("orders", "INFO", "json", stream=stream)
    log = logging.getLogger("orders.checkout")
    order_id = uuid.uuid4()

    with provider.get_tracer("test").start_as_current_span("POST /orders") as span:
        log.info("order %s paid", "A-1", extra={"order_id": order_id, "total": 1250})
        try:
            raise ValueError("tender mismatch")
        except ValueError:
            log.exception("could not close the order", extra={"message_id": Path("/x")})
    log.debug("dropped below INFO")
    log.warning("outside any span")

    first, failure, outside = _lines(stream)
    context = span.get_span_context()
    assert first["message"] == "order A-1 paid"
    assert first["level"] == "INFO"
    assert first["logger"] == "orders.checkout"
    assert first["service"] == "orders"
    assert first["trace_id"] == format_trace_id(context.trace_id)
    assert first["span_id"] == format_span_id(context.span_id)
    assert first["order_id"] == str(order_id)
    assert first["total"] == 1250
    assert str(first["timestamp"]).endswith("Z")
    assert "exception" not in first

    assert failure["level"] == "ERROR"
    assert failure["trace_id"] == format_trace_id(context.trace_id)
    exception = str(failure["exception"])
    assert exception.startswith("Traceback")
    assert "ValueError: tender mismatch" in exception
    assert failure["message_id"] == repr(Path("/x"))

    assert outside["trace_id"] is None
    assert outside["span_id"] is None


@pytest.mark.usefixtures("restore_logging")
def test_setup_logging_twice_keeps_one_handler_and_routes_uvicorn() -> None:
    first_stream, second_stream = io.StringIO(), io.StringIO()
    uvicorn_access = logging.getLogger("uvicorn.access")
    # What uvicorn's default config does: its own handler, no propagation.
    uvicorn_access.addHandler(logging.StreamHandler(io.StringIO()))
    uvicorn_access.propagate = False

    first = setup_logging("orders", stream=first_stream)
    second = setup_logging("orders", "WARNING", "console", stream=second_stream)
    root = logging.getLogger()
    assert first not in root.handlers
    assert second in root.handlers
    assert uvicorn_access.handlers == []
    assert uvicorn_access.propagate

    logging.getLogger("orders").info("below the new level")
    uvicorn_access.warning(
        '%s - "%s %s" %d', "127.0.0.1:5000", "GET", "/x", 404, extra={"color_message": "\x1b[31m"}
    )
    assert first_stream.getvalue() == ""
    (line,) = second_stream.getvalue().splitlines()
    assert 'WARNING  uvicorn.access: 127.0.0.1:5000 - "GET /x" 404' in line
    assert "color_message" not in line

    with pytest.raises(ValueError, match="unknown log format"):
        setup_logging("orders", fmt="xml")
    with pytest.raises(ValueError, match="unknown log level"):
        setup_logging("orders", level="LOUD")
