"""Every process the manifests run starts from the manifests' own settings, answers its probes
where they knock, and exposes every metric an alert or a dashboard queries.

Each Deployment (API, relay, consumers) of each service is started as the dev overlay configures
it (ConfigMap and env), on its own migrated database and the test broker, as the system tests
start them: the app's full lifespan behind an ASGI client. Only what cannot be the cluster's is
replaced: the database URL, the broker address, the secrets, the trace exporter.
"""

from __future__ import annotations

import base64
import importlib
import json
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import httpx
from prometheus_client.parser import text_string_to_metric_families

from contracts.topics import all_topics
from servicekit.telemetry.metrics import ConsumerOutcome
from servicekit.testing.plugin import CreateDatabase
from servicekit.testing.servers import Servers

#: Series Prometheus writes itself for every target.
SCRAPE_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}

PROMQL_WORDS = {
    "by",
    "without",
    "and",
    "or",
    "unless",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "inf",
    "nan",
}

#: Short group timeouts so consumer pods join fast; the manifests leave these at their defaults.
FAST = {
    "CONSUMER_SESSION_TIMEOUT_MS": "2000",
    "CONSUMER_HEARTBEAT_INTERVAL_MS": "500",
    "CONSUMER_REBALANCE_TIMEOUT_MS": "1000",
    "DB_POOL_SIZE": "2",
}


# --- what the manifests query -------------------------------------------------------------------


def queries(objects: list[dict[str, Any]]) -> dict[str, str]:
    """Every PromQL expression of the alerts and the dashboards, by where it is."""
    found: dict[str, str] = {}
    for rule_set in (o for o in objects if o["kind"] == "PrometheusRule"):
        for group in rule_set["spec"]["groups"]:
            for rule in group["rules"]:
                found[f"alert {rule['alert']}"] = rule["expr"]
    for config_map in (o for o in objects if o["kind"] == "ConfigMap"):
        if config_map["metadata"].get("labels", {}).get("grafana_dashboard") != "1":
            continue
        for file_name, content in config_map["data"].items():
            board = json.loads(content)
            for panel in board["panels"]:
                for target in panel["targets"]:
                    found[f"{file_name} / {panel['title']} / {target['refId']}"] = target["expr"]
    return found


def metric_names(expr: str) -> set[str]:
    """The metric names an expression reads: identifiers that are neither functions (followed
    by '('), label names (inside {} or a by/without list), durations nor PromQL keywords."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        rest = text[match.end() :].lstrip()
        name = match.group(0)
        if rest.startswith("(") or name.lower() in PROMQL_WORDS:
            continue
        names.add(name)
    return names


def label_matchers(expr: str) -> Iterator[tuple[str, str, str]]:
    for block in re.findall(r"\{([^}]*)\}", expr):
        yield from re.findall(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"', block)


def test_metric_names_are_read_from_expressions() -> None:
    expr = (
        "histogram_quantile(0.99, sum by (service, le) "
        '(rate(http_request_duration_seconds_bucket{route!~"/a|/b"}[5m]))) > 1 '
        "and on (service) max without (pod) (outbox_backlog) or vector(0)"
    )
    assert metric_names(expr) == {"http_request_duration_seconds_bucket", "outbox_backlog"}


# --- running the manifests' processes -----------------------------------------------------------


def exposed_names(text: str) -> set[str]:
    """Every series name a scrape of ``text`` can hold, samples or not: a labelled metric not
    observed yet shows only its HELP and TYPE lines."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
        suffixes = {
            "counter": ("_total",),
            "histogram": ("_bucket", "_sum", "_count"),
            "summary": ("_sum", "_count"),
        }.get(family.type, ())
        names.update(family.name + suffix for suffix in suffixes)
    return names


def _pod_env(manifests: Any, deployment: dict[str, Any]) -> dict[str, str]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(manifests.named("ConfigMap", source["configMapRef"]["name"])["data"])
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
    return env


class Scraped:
    """What the started processes showed: exposed names and samples, probe answers."""

    def __init__(self) -> None:
        self.names: set[str] = set()
        self.samples: list[tuple[str, dict[str, str]]] = []
        self.routes: dict[str, set[str]] = {}


def _settings_from(svc: Any, env: dict[str, str]) -> Any:
    """The service's settings as its process reads them from ``env``."""
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        return importlib.import_module(f"{svc.package}.config").Settings()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


async def _start_role(
    manifests: Any,
    svc: Any,
    deployment: dict[str, Any],
    database_url: str,
    servers: Servers,
    scraped: Scraped,
) -> None:
    role = deployment["metadata"]["labels"]["app.kubernetes.io/component"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = _pod_env(manifests, deployment)
    env.update({svc.env_prefix + key: value for key, value in FAST.items()})
    env[f"{svc.env_prefix}DATABASE_URL"] = database_url
    env["KAFKA_BOOTSTRAP_SERVERS"] = servers.kafka_bootstrap_servers
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    env["LOG_FORMAT"] = "console"
    env["LOG_LEVEL"] = "WARNING"
    if svc.name == "identity":
        env["IDENTITY_KEY_ENCRYPTION_KEY"] = base64.urlsafe_b64encode(os.urandom(32)).decode()
    if svc.name == "payments":
        env["PAYMENTS_SANDBOX_SECRET"] = secrets.token_urlsafe(24)
    settings = _settings_from(svc, env)
    (port,) = container["ports"]
    # The process binds where the Service and the probes point.
    assert settings.host == "0.0.0.0"
    assert settings.port == port["containerPort"]
    app = importlib.import_module(f"{svc.package}.main").create_app(settings)
    scraped.routes[svc.name] = set(app.openapi()["paths"]) | {"/metrics"}
    async with app.router.lifespan_context(app):
        runtime = app.state.runtime
        assert (runtime.relay is not None) == (role == "relay"), f"{svc.name} {role}"
        assert bool(runtime.consumers) == (role == "consumers"), f"{svc.name} {role}"
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://pod") as client:
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                answer = await client.get(container[probe]["httpGet"]["path"])
                assert answer.status_code == 200, f"{svc.name} {role} {probe}: {answer.text}"
            # A request that matches no route, so the HTTP series have a sample.
            await client.get("/v1/no-such-thing")
            text = (await client.get("/metrics")).text
    scraped.names |= exposed_names(text)
    for family in text_string_to_metric_families(text):
        scraped.samples += [(s.name, dict(s.labels)) for s in family.samples]


async def test_processes_answer_probes_and_expose_every_queried_metric(
    create_database: CreateDatabase, servers: Servers, services: list[Any], dev_manifests: Any
) -> None:
    scraped = Scraped()
    for svc in services:
        migrations = Path(importlib.import_module(svc.package).__file__ or "").parent / "migrations"
        url = await create_database(f"k8s_{svc.package}", migrations=migrations)
        for deployment in dev_manifests.of_kind("Deployment"):
            if deployment["metadata"]["labels"].get("app.kubernetes.io/name") == svc.name:
                await _start_role(dev_manifests, svc, deployment, url, servers, scraped)

    # Series with samples once a process serves: HTTP, the relay's outbox gauges, the process.
    sampled = {name for name, _ in scraped.samples}
    for name in (
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "outbox_backlog",
        "outbox_oldest_age_seconds",
        "process_resident_memory_bytes",
    ):
        assert name in sampled, name

    expressions = queries(dev_manifests)
    assert len(expressions) > 40
    missing = {}
    for where, expr in expressions.items():
        unknown = metric_names(expr) - scraped.names - SCRAPE_SERIES
        if unknown:
            missing[where] = sorted(unknown)
    assert not missing, f"queried but not exposed: {missing}"

    # Label values the queries filter on are ones the code produces.
    known = {
        "service": {svc.name for svc in services},
        "route": set().union(*scraped.routes.values()),
        "topic": {t.name for t in all_topics()},
        "event_type": {t for svc in services for t in svc.handles},
        "outcome": set(get_args(ConsumerOutcome)),
    }
    wrong = []
    for where, expr in expressions.items():
        for label, op, value in label_matchers(expr):
            if label not in known or op not in ("=", "=~"):
                continue
            values = known[label]
            if op == "=" and value not in values:
                wrong.append(f"{where}: {label}={value!r}")
            if op == "=~" and not any(re.fullmatch(value, v) for v in values):
                wrong.append(f"{where}: {label}=~{value!r} matches nothing")
    assert not wrong, wrong


async def test_migration_jobs_migrate_and_can_run_again(
    servers: Servers, services: list[Any], dev_manifests: Any
) -> None:
    """Each ``<service>-migrate`` Job's command (``python -m <service> migrate``: the package's
    ``__main__`` handing its arguments to ``servicekit.runner.main``), with the Job's settings,
    creates and migrates a fresh database; run again (a retried or re-applied Job) it finds
    nothing to do. In-process, one at a time: alembic's environment is process-global."""
    import asyncio

    import asyncpg
    from sqlalchemy.engine import make_url

    from servicekit.runner import main as run

    admin = make_url(servers.postgres_url)
    for svc in services:
        job = dev_manifests.named("Job", f"{svc.name}-migrate")
        container = job["spec"]["template"]["spec"]["containers"][0]
        entry = importlib.import_module(f"{svc.package}.__main__")
        name = servers.new_database_name(f"k8s_job_{svc.package}")
        env = _pod_env(dev_manifests, job)
        env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
        env["LOG_FORMAT"] = "console"
        env["LOG_LEVEL"] = "WARNING"
        env[f"{svc.env_prefix}DATABASE_URL"] = admin.set(database=name).render_as_string(
            hide_password=False
        )
        settings = _settings_from(svc, env)
        for _ in range(2):
            await asyncio.to_thread(
                run, settings, entry.create_app, entry.MIGRATIONS, list(container["args"])
            )
        connection = await asyncpg.connect(
            admin.set(database=name).render_as_string(hide_password=False)
        )
        try:
            version = await connection.fetchval("SELECT version_num FROM alembic_version")
        finally:
            await connection.close()
        assert version, svc.name
