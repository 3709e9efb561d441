"""The trace of the request that wrote an event continues in the consumer that applies it:
through the outbox row's headers, the relay's publish span and the Kafka headers."""

from __future__ import annotations

import sqlalchemy as sa
from opentelemetry import trace
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import EventEnvelope
from servicekit.bus.memory import InMemoryConsumerTransport, InMemoryPublisher
from servicekit.consumer import EventConsumer, HandlerRegistry
from servicekit.outbox import add_event
from servicekit.telemetry.tracing import setup_tracing


async def test_consumer_span_belongs_to_the_writing_request_trace(pair, memory_broker) -> None:
    setup_tracing("servicekit-tests")
    tracer = trace.get_tracer("tests")
    seen: list[tuple[int, int]] = []

    with tracer.start_as_current_span("POST /v1/things") as request_span:
        event = EventEnvelope(
            type="inventory.stock.noted",
            producer="inventory",
            aggregate_type="stock",
            aggregate_id="s-1",
            payload={"n": 1},
        )
        async with pair.producer.transaction() as session:
            await add_event(session, event, topic=pair.topic)
    request_trace = request_span.get_span_context().trace_id

    async with pair.producer.transaction() as session:
        headers = (await session.execute(sa.text("SELECT headers FROM outbox"))).scalar_one()
    assert f"{request_trace:032x}" in headers["traceparent"]

    await pair.relay(InMemoryPublisher(memory_broker)).relay_once()

    handlers = HandlerRegistry()

    async def record(session: AsyncSession, incoming: EventEnvelope) -> None:
        context = trace.get_current_span().get_span_context()
        seen.append((context.trace_id, context.span_id))

    handlers.add("inventory.stock.noted", record, topic=pair.topic)
    consumer = EventConsumer(
        name="traced",
        service="consumer",
        database=pair.consumer,
        transport=InMemoryConsumerTransport(memory_broker, group_id="traced", topics=[pair.topic]),
        dlq_publisher=InMemoryPublisher(memory_broker),
        handlers=handlers,
    )
    await consumer.transport.start()
    await consumer.poll_once(timeout_ms=1000)

    assert len(seen) == 1
    trace_id, span_id = seen[0]
    assert trace_id == request_trace
    assert span_id != request_span.get_span_context().span_id  # its own process span
