"""``create_app``: the one place a service is wired together.

A service hands over its settings, routers and event handlers; the factory adds problem+json
errors, telemetry, ``/healthz``, ``/readyz`` and ``/metrics``, and a lifespan that opens the
database, starts the outbox relay and the consumers, and stops them in reverse order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse

from servicekit.audit import LogAuditor
from servicekit.auth import JwksKeySource, TokenVerifier
from servicekit.bus.base import PublisherTransport
from servicekit.bus.factory import Bus, KafkaBus
from servicekit.consumer import EventConsumer, HandlerRegistry
from servicekit.db import Database
from servicekit.errors import install_problem_handlers
from servicekit.idempotency import purge_expired
from servicekit.openapi import document_problems
from servicekit.relay import OutboxRelay
from servicekit.settings import ServiceSettings
from servicekit.telemetry import metrics
from servicekit.telemetry.logging import setup_logging
from servicekit.telemetry.tracing import instrument_app, instrument_engine, setup_tracing

log = logging.getLogger(__name__)

TOKEN_ISSUER = "countertop-identity"
TOKEN_AUDIENCE = "countertop"

Hook = Callable[["Runtime"], Awaitable[None]]


@dataclass
class Runtime:
    """What a running service holds; kept at ``app.state.runtime``."""

    settings: ServiceSettings
    database: Database
    bus: Bus
    relay: OutboxRelay | None = None
    auditor: LogAuditor | None = None
    consumers: list[EventConsumer] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)


def create_app(
    settings: ServiceSettings,
    *,
    title: str,
    routers: Sequence[APIRouter] = (),
    consumers: Mapping[str, HandlerRegistry] | None = None,
    publishes: Sequence[str] = (),
    bus: Bus | None = None,
    token_verifier: TokenVerifier | None = None,
    on_startup: Sequence[Hook] = (),
    on_shutdown: Sequence[Hook] = (),
    version: str = "0.1.0",
) -> FastAPI:
    """Build a service's FastAPI app.

    ``consumers`` maps a consumer name (its Kafka group is ``<service>.<name>``) to its
    handlers; ``publishes`` lists the topics the service writes, created at start-up.
    """
    # Before anything connects anywhere: an unsafe production configuration never serves.
    settings.check_production()
    service = settings.service_name
    setup_logging(service, settings.log_level, settings.log_format)
    setup_tracing(service, settings.otlp_endpoint)
    the_bus: Bus = bus or KafkaBus(
        settings.kafka_bootstrap_servers,
        session_timeout_ms=settings.consumer_session_timeout_ms,
        heartbeat_interval_ms=settings.consumer_heartbeat_interval_ms,
        rebalance_timeout_ms=settings.consumer_rebalance_timeout_ms,
        fetch_max_wait_ms=settings.consumer_fetch_max_wait_ms,
        idle_fetch_max_wait_ms=settings.consumer_idle_fetch_max_wait_ms,
        partitions=settings.kafka_partitions,
        call_timeout=settings.kafka_call_timeout,
    )
    registries = dict(consumers or {})

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database = Database(
            settings.sqlalchemy_url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
        )
        instrument_engine(database.engine)
        runtime = Runtime(settings=settings, database=database, bus=the_bus)
        app.state.runtime = runtime
        app.state.database = database
        app.state.settings = settings
        app.state.token_verifier = token_verifier or TokenVerifier(
            JwksKeySource(settings.jwks_url, cache_seconds=settings.jwks_cache_seconds),
            issuer=TOKEN_ISSUER,
            audience=TOKEN_AUDIENCE,
        )
        topics = set(publishes)
        for registry in registries.values():
            topics.update(registry.topics)
        topics.update({f"{t}.dlq" for t in registries_topics(registries)})
        await _ensure_topics(the_bus, topics, settings.kafka_partitions)

        publisher = the_bus.publisher(f"{service}-relay")
        if settings.run_relay:
            inspector = the_bus.log_inspector() if settings.outbox_audit_interval > 0 else None
            if inspector is not None:
                runtime.auditor = LogAuditor(
                    database,
                    inspector,
                    service=service,
                    partitions=settings.kafka_partitions,
                    interval=settings.outbox_audit_interval,
                    idle_interval=settings.outbox_audit_idle_interval,
                )
            auditor = runtime.auditor
            runtime.relay = OutboxRelay(
                database,
                publisher,
                service=service,
                batch_size=settings.outbox_batch_size,
                poll_interval=settings.outbox_poll_interval,
                retention_seconds=settings.outbox_retention_hours * 3600,
                max_attempts=settings.outbox_max_attempts,
                audited_before=auditor.audited_before if auditor is not None else None,
                on_recovered=auditor.wake if auditor is not None else None,
            )
            if auditor is not None:
                auditor.on_rearmed = runtime.relay.wake
                await auditor.start()
            await runtime.relay.start()
        dlq_publisher = the_bus.publisher(f"{service}-dlq")
        health_publisher = the_bus.publisher(f"{service}-health")
        runtime.extras["health_publisher"] = health_publisher
        if settings.run_consumers:
            for name, registry in registries.items():
                group = f"{service}.{name}"
                consumer = EventConsumer(
                    name=group,
                    service=service,
                    database=database,
                    transport=the_bus.consumer(group, registry.topics, f"{service}-{name}"),
                    dlq_publisher=dlq_publisher,
                    handlers=registry,
                    max_attempts=settings.consumer_max_attempts,
                    retry_backoff=settings.consumer_retry_backoff,
                    max_commit_failures=settings.consumer_max_commit_failures,
                    assignment_timeout=settings.consumer_assignment_timeout,
                )
                runtime.consumers.append(consumer)
                await consumer.start()
        unregister_hook = metrics.register_scrape_hook(service, _outbox_gauges(runtime))
        housekeeping = asyncio.create_task(_housekeeping(database), name=f"{service}-housekeeping")
        for hook in on_startup:
            await hook(runtime)
        log.info("%s started on port %s", service, settings.port)
        try:
            yield
        finally:
            unregister_hook()
            housekeeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await housekeeping
            for hook in reversed(on_shutdown):
                with contextlib.suppress(Exception):
                    await hook(runtime)
            for consumer in runtime.consumers:
                await consumer.stop()
            if runtime.relay is not None:
                await runtime.relay.stop()
            if runtime.auditor is not None:
                await runtime.auditor.stop()
            for transport in (publisher, dlq_publisher, health_publisher):
                with contextlib.suppress(Exception):
                    await transport.stop()
            await database.dispose()
            log.info("%s stopped", service)

    app = FastAPI(title=title, version=version, lifespan=lifespan)
    install_problem_handlers(app)
    app.add_middleware(metrics.PrometheusMiddleware, service=service)
    instrument_app(app)

    @app.get("/healthz", tags=["operations"], summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["operations"],
        summary="Database and broker are reachable, no consumer group is stuck",
    )
    async def readyz(request: Request) -> Response:
        runtime: Runtime = request.app.state.runtime
        checks: dict[str, str] = {}
        checks["database"] = await _check(runtime.database.ping())
        checks["broker"] = await _check(_broker_ping(runtime))
        stuck = {c.name: c.stuck for c in runtime.consumers if c.stuck is not None}
        checks["consumers"] = (
            "ok" if not stuck else "stuck: " + "; ".join(f"{g} ({r})" for g, r in stuck.items())
        )
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "unavailable", "checks": checks},
            status_code=200 if ready else 503,
        )

    @app.get("/metrics", tags=["operations"], include_in_schema=False)
    async def metrics_route() -> Response:
        return await metrics.metrics_response(service)

    for router in routers:
        app.include_router(router)
    document_problems(app)
    return app


def registries_topics(registries: Mapping[str, HandlerRegistry]) -> set[str]:
    return {t for r in registries.values() for t in r.topics}


async def _ensure_topics(bus: Bus, topics: set[str], partitions: int) -> None:
    # Topics are created by whoever starts first; retry while the broker comes up.
    for attempt in range(30):
        try:
            await bus.ensure_topics(sorted(topics), partitions)
            return
        except Exception as exc:
            if attempt == 29:
                log.error("could not create topics: %s", exc)
                return
            await asyncio.sleep(1)


async def _broker_ping(runtime: Runtime) -> None:
    publisher: PublisherTransport = runtime.extras["health_publisher"]
    await publisher.ping()


async def _check(probe: Awaitable[None], timeout: float = 3.0) -> str:
    try:
        await asyncio.wait_for(probe, timeout)
    except Exception as exc:
        return f"failed: {type(exc).__name__}"
    return "ok"


async def _housekeeping(database: Database, interval: float = 600.0) -> None:
    """Purge expired idempotency keys now and then (every replica may; deletes are cheap)."""
    while True:
        await asyncio.sleep(interval)
        try:
            async with database.transaction() as session:
                purged = await purge_expired(session, limit=10_000)
            if purged:
                log.info("purged %d expired idempotency keys", purged)
        except Exception as exc:
            log.warning("idempotency key purge failed: %s", exc)


def _outbox_gauges(runtime: Runtime) -> Callable[[], Awaitable[None]]:
    async def refresh() -> None:
        if runtime.relay is None:
            return
        count, oldest = await runtime.relay.backlog()
        service = runtime.settings.service_name
        metrics.outbox_backlog.labels(service).set(count)
        metrics.outbox_parked.labels(service).set(await runtime.relay.parked())
        age = 0.0
        if oldest is not None:
            age = max((datetime.now(UTC) - oldest).total_seconds(), 0.0)
        metrics.outbox_oldest_age_seconds.labels(service).set(age)

    return refresh
