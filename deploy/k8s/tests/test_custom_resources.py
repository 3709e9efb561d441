"""The custom resources (Strimzi, CloudNativePG, Prometheus Operator, KEDA) use only fields their
operators define, with the types they expect, and have the fields those operators require.

The operators' full CRD schemas are large and not shipped in any package we install; each kind's
schema below is the part of the operator's CRD this project uses (field names and types as in
the operator's documentation). An unknown field fails: that is the typo an operator would
silently ignore."""

from __future__ import annotations

from typing import Any

import pytest

ANY = object()
STR, INT, BOOL = str, int, bool


def listing(item: Any) -> list[Any]:
    return [item]


OBJECT_META = {"name": STR, "namespace": STR, "labels": {STR: STR}, "annotations": {STR: STR}}

K8S_SELECTOR = {
    "matchLabels": {STR: STR},
    "matchExpressions": listing({"key": STR, "operator": STR, "values": listing(STR)}),
}
SECRET_KEY = {"name": STR, "key": STR}

STRIMZI_STORAGE_VOLUME = {
    "id": INT,
    "type": STR,
    "size": STR,
    "sizeLimit": STR,
    "deleteClaim": BOOL,
    "kraftMetadata": STR,
    "class": STR,
}

SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    ("kafka.strimzi.io/v1beta2", "Kafka"): {
        "kafka": {
            "version": STR,
            "metadataVersion": STR,
            "listeners": listing(
                {
                    "name": STR,
                    "port": INT,
                    "type": STR,
                    "tls": BOOL,
                    "authentication": {"type": STR},
                    "networkPolicyPeers": ANY,
                }
            ),
            "config": {STR: ANY},
            "metricsConfig": {
                "type": STR,
                "valueFrom": {"configMapKeyRef": SECRET_KEY},
            },
        },
        "entityOperator": {"topicOperator": {STR: ANY}, "userOperator": {STR: ANY}},
    },
    ("kafka.strimzi.io/v1beta2", "KafkaNodePool"): {
        "replicas": INT,
        "roles": listing(STR),
        "storage": {"type": STR, "volumes": listing(STRIMZI_STORAGE_VOLUME)},
        "resources": {"requests": {STR: STR}, "limits": {STR: STR}},
    },
    ("kafka.strimzi.io/v1beta2", "KafkaTopic"): {
        "topicName": STR,
        "partitions": INT,
        "replicas": INT,
        "config": {STR: ANY},
    },
    ("postgresql.cnpg.io/v1", "Cluster"): {
        "instances": INT,
        "imageName": STR,
        "primaryUpdateStrategy": STR,
        "minSyncReplicas": INT,
        "maxSyncReplicas": INT,
        "storage": {"size": STR, "storageClass": STR},
        "postgresql": {"parameters": {STR: STR}},
        "managed": {
            "roles": listing(
                {
                    "name": STR,
                    "ensure": STR,
                    "login": BOOL,
                    "connectionLimit": INT,
                    "passwordSecret": {"name": STR},
                }
            )
        },
        "backup": {
            "retentionPolicy": STR,
            "barmanObjectStore": {
                "destinationPath": STR,
                "s3Credentials": {"accessKeyId": SECRET_KEY, "secretAccessKey": SECRET_KEY},
                "wal": {"compression": STR},
                "data": {"compression": STR},
            },
        },
        "monitoring": {"enablePodMonitor": BOOL},
        "affinity": {
            "enablePodAntiAffinity": BOOL,
            "topologyKey": STR,
            "podAntiAffinityType": STR,
        },
    },
    ("postgresql.cnpg.io/v1", "Database"): {
        "name": STR,
        "owner": STR,
        "cluster": {"name": STR},
        "ensure": STR,
    },
    ("postgresql.cnpg.io/v1", "ScheduledBackup"): {
        "schedule": STR,
        "backupOwnerReference": STR,
        "cluster": {"name": STR},
        "method": STR,
    },
    ("monitoring.coreos.com/v1", "ServiceMonitor"): {
        "selector": K8S_SELECTOR,
        "endpoints": listing(
            {
                "port": STR,
                "path": STR,
                "interval": STR,
                "scrapeTimeout": STR,
                "honorLabels": BOOL,
            }
        ),
    },
    ("monitoring.coreos.com/v1", "PodMonitor"): {
        "selector": K8S_SELECTOR,
        "podMetricsEndpoints": listing(
            {
                "port": STR,
                "path": STR,
                "interval": STR,
                "scrapeTimeout": STR,
                "honorLabels": BOOL,
            }
        ),
    },
    ("monitoring.coreos.com/v1", "PrometheusRule"): {
        "groups": listing(
            {
                "name": STR,
                "rules": listing(
                    {
                        "alert": STR,
                        "record": STR,
                        "expr": STR,
                        "for": STR,
                        "labels": {STR: STR},
                        "annotations": {STR: STR},
                    }
                ),
            }
        )
    },
    ("keda.sh/v1alpha1", "ScaledObject"): {
        "scaleTargetRef": {"name": STR, "kind": STR, "apiVersion": STR},
        "pollingInterval": INT,
        "cooldownPeriod": INT,
        "minReplicaCount": INT,
        "maxReplicaCount": INT,
        "triggers": listing({"type": STR, "metadata": {STR: STR}}),
    },
}

REQUIRED: dict[str, list[str]] = {
    "Kafka": ["kafka.listeners", "kafka.version"],
    "KafkaNodePool": ["replicas", "roles", "storage.type"],
    "KafkaTopic": ["partitions", "replicas"],
    "Cluster": ["instances", "storage.size"],
    "Database": ["name", "owner", "cluster.name"],
    "ScheduledBackup": ["schedule", "cluster.name"],
    "ServiceMonitor": ["selector", "endpoints"],
    "PodMonitor": ["selector", "podMetricsEndpoints"],
    "PrometheusRule": ["groups"],
    "ScaledObject": ["scaleTargetRef.name", "triggers"],
}

#: Labels the operators select on: a node pool or topic without its cluster label is ignored.
REQUIRED_LABELS = {"KafkaNodePool": "strimzi.io/cluster", "KafkaTopic": "strimzi.io/cluster"}


def check(value: Any, schema: Any, where: str) -> list[str]:
    """Problems of ``value`` against ``schema`` (a type, ANY, a one-item list, or a dict whose
    keys are field names, or the single key ``str`` for a map of anything-named fields)."""
    if schema is ANY:
        return []
    if isinstance(schema, list):
        if not isinstance(value, list):
            return [f"{where}: expected a list"]
        return [p for i, item in enumerate(value) for p in check(item, schema[0], f"{where}[{i}]")]
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            return [f"{where}: expected an object"]
        problems = []
        for key, item in value.items():
            if key in schema:
                problems += check(item, schema[key], f"{where}.{key}")
            elif str in schema:
                problems += check(item, schema[str], f"{where}.{key}")
            else:
                problems.append(f"{where}.{key}: not a field of this kind")
        return problems
    if schema is STR and isinstance(value, str):
        return []
    if schema is BOOL and isinstance(value, bool):
        return []
    if schema is INT and isinstance(value, int) and not isinstance(value, bool):
        return []
    return [f"{where}: expected {schema.__name__}, got {type(value).__name__}"]


def _get(obj: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(obj, dict) or part not in obj:
            return None
        obj = obj[part]
    return obj


def test_custom_resources_use_only_their_operators_fields(manifests: Any) -> None:
    core = ("v1", "apps/v1", "batch/v1", "policy/v1", "autoscaling/v2", "networking.k8s.io/v1")
    problems: list[str] = []
    seen = set()
    for obj in manifests:
        if obj["apiVersion"] in core:
            continue
        key = (obj["apiVersion"], obj["kind"])
        assert key in SCHEMAS, f"{key}: a custom resource with no schema here"
        seen.add(obj["kind"])
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        assert set(obj) <= {"apiVersion", "kind", "metadata", "spec"}, name
        problems += check(obj["metadata"], OBJECT_META, f"{name} metadata")
        problems += check(obj["spec"], SCHEMAS[key], f"{name} spec")
        for dotted in REQUIRED[obj["kind"]]:
            if _get(obj["spec"], dotted) is None:
                problems.append(f"{name}: spec.{dotted} is required")
        label = REQUIRED_LABELS.get(obj["kind"])
        if label and label not in obj["metadata"].get("labels", {}):
            problems.append(f"{name}: label {label} is required")
    assert not problems, "\n".join(problems)
    assert {"Kafka", "KafkaNodePool", "KafkaTopic", "Cluster", "Database"} <= seen


@pytest.mark.parametrize(
    ("value", "schema", "problem"),
    [
        ({"partitons": 3}, SCHEMAS[("kafka.strimzi.io/v1beta2", "KafkaTopic")], "not a field"),
        ({"partitions": "3"}, SCHEMAS[("kafka.strimzi.io/v1beta2", "KafkaTopic")], "expected int"),
        ({"roles": "broker"}, SCHEMAS[("kafka.strimzi.io/v1beta2", "KafkaNodePool")], "a list"),
    ],
)
def test_the_check_catches_typos_and_wrong_types(value: Any, schema: Any, problem: str) -> None:
    assert any(problem in p for p in check(value, schema, "spec"))
