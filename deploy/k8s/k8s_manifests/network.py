"""NetworkPolicies: deny by default, then only the paths the architecture uses."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from k8s_manifests.model import (
    HTTP_PORT_NAME,
    KAFKA_CLUSTER,
    MQTT_HOST,
    OTEL_COLLECTOR,
    PART_OF,
    PG_CLUSTER,
    Service,
    labels,
)


def _pods(**match: str) -> dict[str, Any]:
    return {"podSelector": {"matchLabels": match}}


def _namespace(name: str) -> dict[str, Any]:
    return {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": name}}}


def _tcp(*ports: int | str) -> list[dict[str, Any]]:
    return [{"protocol": "TCP", "port": port} for port in ports]


def _policy(name: str, selector: Mapping[str, str], **spec: Any) -> dict[str, Any]:
    types = [t for t in ("Ingress", "Egress") if t.lower() in spec]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": PART_OF}},
        "spec": {"podSelector": {"matchLabels": dict(selector)}, "policyTypes": types, **spec},
    }


def network_policies(services: list[Service]) -> list[dict[str, Any]]:
    part_of = {"app.kubernetes.io/part-of": PART_OF}
    pg = {"cnpg.io/cluster": PG_CLUSTER}
    kafka = {"strimzi.io/cluster": KAFKA_CLUSTER}
    identity_api = labels("identity", "api")
    anywhere_but_cluster = {
        "ipBlock": {
            "cidr": "0.0.0.0/0",
            "except": ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"],
        }
    }
    out = [
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "default-deny", "labels": part_of},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
        },
        _policy(
            "allow-dns",
            {},
            egress=[
                {
                    "to": [{**_namespace("kube-system"), **_pods(**{"k8s-app": "kube-dns"})}],
                    "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
                }
            ],
        ),
    ]
    for svc in services:
        egress: list[dict[str, Any]] = [
            {"to": [{"podSelector": {"matchLabels": pg}}], "ports": _tcp(5432)},
            {"to": [{"podSelector": {"matchLabels": kafka}}], "ports": _tcp(9092)},
            {"to": [_pods(**{"app.kubernetes.io/name": OTEL_COLLECTOR})], "ports": _tcp(4318)},
        ]
        if svc.name != "identity":
            egress.append(
                {"to": [{"podSelector": {"matchLabels": identity_api}}], "ports": _tcp(8101)}
            )
        if svc.name == "device-gateway":
            egress.append(
                {"to": [_pods(**{"app.kubernetes.io/name": MQTT_HOST})], "ports": _tcp(1883)}
            )
            # The stores' network printers (raw TCP), outside the cluster.
            egress.append({"to": [anywhere_but_cluster], "ports": _tcp(9100)})
        if svc.name == "payments":
            # Payment providers' APIs, outside the cluster.
            egress.append({"to": [anywhere_but_cluster], "ports": _tcp(443)})
            # Orders' API, for an order the orders events have not brought yet.
            egress.append(
                {
                    "to": [{"podSelector": {"matchLabels": labels("orders", "api")}}],
                    "ports": _tcp(8102),
                }
            )
        ingress: list[dict[str, Any]] = [
            {"from": [_namespace("monitoring")], "ports": _tcp(HTTP_PORT_NAME)},
        ]
        out.append(
            _policy(f"{svc.name}-egress", {"app.kubernetes.io/name": svc.name}, egress=egress)
        )
        out.append(
            _policy(f"{svc.name}-metrics", {"app.kubernetes.io/name": svc.name}, ingress=ingress)
        )
        api_from: list[dict[str, Any]] = [_namespace("ingress-nginx")]
        if svc.name == "identity":
            # Every service fetches identity's JWKS to verify tokens.
            api_from.append({"podSelector": {"matchLabels": part_of}})
        if svc.name == "orders":
            # Payments reads an order through when the orders events lag.
            api_from.append(
                {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "payments"}}}
            )
        out.append(
            _policy(
                f"{svc.name}-api-ingress",
                labels(svc.name, "api"),
                ingress=[{"from": api_from, "ports": _tcp(HTTP_PORT_NAME)}],
            )
        )
    service_pods = {
        "podSelector": {
            "matchExpressions": [
                {
                    "key": "app.kubernetes.io/name",
                    "operator": "In",
                    "values": [s.name for s in services],
                }
            ]
        }
    }
    out += [
        _policy(
            "postgres",
            pg,
            ingress=[
                {"from": [service_pods], "ports": _tcp(5432)},
                {"from": [{"podSelector": {"matchLabels": pg}}], "ports": _tcp(5432, 8000)},
                {"from": [_namespace("cnpg-system")], "ports": _tcp(5432, 8000)},
                {"from": [_namespace("monitoring")], "ports": _tcp(9187)},
            ],
            egress=[
                {"to": [{"podSelector": {"matchLabels": pg}}], "ports": _tcp(5432, 8000)},
                # The instance manager talks to the Kubernetes API; backups go to object storage.
                {"ports": _tcp(443, 6443)},
            ],
        ),
        _policy(
            "kafka",
            kafka,
            ingress=[
                {"from": [service_pods], "ports": _tcp(9092)},
                # KEDA reads consumer-group lag.
                {"from": [_namespace("keda")], "ports": _tcp(9092)},
                {"from": [{"podSelector": {"matchLabels": kafka}}]},
                {"from": [_namespace("strimzi")]},
                {"from": [_namespace("monitoring")], "ports": _tcp(9404)},
            ],
            egress=[
                {"to": [{"podSelector": {"matchLabels": kafka}}]},
                {"ports": _tcp(443, 6443)},
            ],
        ),
        _policy(
            "mqtt",
            {"app.kubernetes.io/name": MQTT_HOST},
            ingress=[
                {
                    "from": [_pods(**{"app.kubernetes.io/name": "device-gateway"})],
                    "ports": _tcp(1883),
                }
            ],
        ),
        _policy(
            "otel-collector",
            {"app.kubernetes.io/name": OTEL_COLLECTOR},
            ingress=[
                {"from": [service_pods], "ports": _tcp(4318)},
                {"from": [_namespace("monitoring")], "ports": _tcp(8888)},
            ],
            # The tracing backend (Tempo, Jaeger or a vendor) over OTLP.
            egress=[{"ports": _tcp(4317, 443)}],
        ),
    ]
    return out
