"""Per service: ServiceAccount, ConfigMap, Service, a Deployment per role (API, outbox relay,
consumers) and the migrations Job; in production their replicas, spreading, autoscaling (HPA on
CPU for the API, KEDA on consumer-group lag for the consumers) and disruption budgets."""

from __future__ import annotations

from typing import Any

from k8s_manifests.model import (
    HTTP_PORT_NAME,
    KAFKA_BOOTSTRAP,
    LAG_THRESHOLD,
    MQTT_HOST,
    OTEL_COLLECTOR,
    PARTITIONS,
    PG_HOST,
    Service,
    labels,
    meta,
)


def config_map(svc: Service) -> dict[str, Any]:
    p = svc.env_prefix
    data = {
        # The code listens on 127.0.0.1 unless told otherwise.
        f"{p}HOST": "0.0.0.0",
        f"{p}PORT": str(svc.port),
        f"{p}KAFKA_PARTITIONS": str(PARTITIONS),
        f"{p}JWKS_URL": "http://identity:8101/.well-known/jwks.json",
        "KAFKA_BOOTSTRAP_SERVERS": KAFKA_BOOTSTRAP,
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{OTEL_COLLECTOR}:4318",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
    }
    if svc.name == "device-gateway":
        data["MQTT_URL"] = f"mqtt://{MQTT_HOST}:1883"
    if svc.name == "payments":
        data[f"{p}PUBLIC_URL"] = "https://api.countertop.example.com"
        data[f"{p}SANDBOX_INSTRUCTIONS_ENABLED"] = "false"
        # A payment that outruns the orders events reads its order from orders' API.
        data[f"{p}ORDERS_URL"] = "http://orders:8102"
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta(f"{svc.name}-config", svc.name),
        "data": data,
    }


def role_env(svc: Service, role: str) -> list[dict[str, Any]]:
    p = svc.env_prefix
    env: list[dict[str, Any]] = [
        {
            "name": "DB_USER",
            "valueFrom": {"secretKeyRef": {"name": f"{svc.name}-db", "key": "username"}},
        },
        {
            "name": "DB_PASSWORD",
            "valueFrom": {"secretKeyRef": {"name": f"{svc.name}-db", "key": "password"}},
        },
        {
            # Kubernetes expands $(VAR) from the variables above; the password must be URL-safe
            # (the runbook generates it so).
            "name": f"{p}DATABASE_URL",
            "value": f"postgresql://$(DB_USER):$(DB_PASSWORD)@{PG_HOST}:5432/{svc.database}",
        },
        {"name": f"{p}RUN_RELAY", "value": "true" if role == "relay" else "false"},
        {"name": f"{p}RUN_CONSUMERS", "value": "true" if role == "consumers" else "false"},
        {"name": "OTEL_RESOURCE_ATTRIBUTES", "value": f"service.role={role}"},
    ]
    for setting, owner in svc.extra_settings.items():
        env.append({"name": f"{p}{setting.upper()}", "value": "true" if owner == role else "false"})
    if svc.name == "identity":
        env.append(
            {
                "name": "IDENTITY_KEY_ENCRYPTION_KEY",
                "valueFrom": {
                    "secretKeyRef": {"name": "identity-keys", "key": "key-encryption-key"}
                },
            }
        )
    if svc.name == "payments":
        env.append(
            {
                "name": "PAYMENTS_SANDBOX_SECRET",
                "valueFrom": {
                    "secretKeyRef": {"name": "payments-providers", "key": "sandbox-secret"}
                },
            }
        )
    return env


def security_context() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def pod_security_context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "fsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container(svc: Service, role: str, args: list[str], probes: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": svc.name,
        "image": f"countertop/{svc.name}",
        "imagePullPolicy": "IfNotPresent",
        "args": args,
        "envFrom": [{"configMapRef": {"name": f"{svc.name}-config"}}],
        "env": role_env(svc, role),
        "resources": {
            "requests": {"cpu": "250m", "memory": "256Mi"},
            "limits": {"memory": "512Mi"},
        },
        "securityContext": security_context(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    if probes:
        spec["ports"] = [{"name": HTTP_PORT_NAME, "containerPort": svc.port, "protocol": "TCP"}]
        spec["startupProbe"] = {
            # Start-up migrates the database (under the advisory lock) before it serves.
            "httpGet": {"path": "/healthz", "port": HTTP_PORT_NAME},
            "periodSeconds": 5,
            "failureThreshold": 60,
            "timeoutSeconds": 3,
        }
        spec["livenessProbe"] = {
            "httpGet": {"path": "/healthz", "port": HTTP_PORT_NAME},
            "periodSeconds": 10,
            "failureThreshold": 3,
            "timeoutSeconds": 3,
        }
        spec["readinessProbe"] = {
            "httpGet": {"path": "/readyz", "port": HTTP_PORT_NAME},
            "periodSeconds": 5,
            "failureThreshold": 3,
            # /readyz gives each of its checks up to 3 s.
            "timeoutSeconds": 8,
        }
    return spec


def pod_spec(svc: Service, containers: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "serviceAccountName": svc.name,
        "automountServiceAccountToken": False,
        "securityContext": pod_security_context(),
        "containers": containers,
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
        **extra,
    }


def deployment(svc: Service, role: str) -> dict[str, Any]:
    name = svc.name if role == "api" else f"{svc.name}-{role}"
    selector = labels(svc.name, role)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(name, svc.name, role),
        "spec": {
            "replicas": 1,
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": selector},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {
                "metadata": {
                    "labels": selector,
                    "annotations": {"kubectl.kubernetes.io/default-container": svc.name},
                },
                "spec": pod_spec(
                    svc,
                    [container(svc, role, ["serve"], probes=True)],
                    # Uvicorn drains for up to 10 s; consumers then commit and leave their group.
                    terminationGracePeriodSeconds=30,
                ),
            },
        },
    }


def migrate_job(svc: Service) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta(f"{svc.name}-migrate", svc.name, "migrate"),
        "spec": {
            "backoffLimit": 6,
            "ttlSecondsAfterFinished": 86400,
            "template": {
                "metadata": {"labels": labels(svc.name, "migrate")},
                "spec": pod_spec(
                    svc,
                    [container(svc, "migrate", ["migrate"], probes=False)],
                    restartPolicy="OnFailure",
                ),
            },
        },
    }


def service_objects(svc: Service) -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": meta(svc.name, svc.name),
            "automountServiceAccountToken": False,
        },
        config_map(svc),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta(svc.name, svc.name, "api"),
            "spec": {
                "selector": labels(svc.name, "api"),
                "ports": [
                    {
                        "name": HTTP_PORT_NAME,
                        "port": svc.port,
                        "targetPort": HTTP_PORT_NAME,
                        "protocol": "TCP",
                    }
                ],
            },
        },
    ]
    objects += [deployment(svc, role) for role in svc.roles]
    objects.append(migrate_job(svc))
    return objects


def hpa(svc: Service) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": meta(svc.name, svc.name, "api"),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": svc.name},
            "minReplicas": 3,
            "maxReplicas": 12,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 70},
                    },
                }
            ],
        },
    }


def scaled_object(svc: Service) -> dict[str, Any]:
    triggers = [
        {
            "type": "kafka",
            "metadata": {
                "bootstrapServers": KAFKA_BOOTSTRAP,
                "consumerGroup": group,
                "topic": topic,
                "lagThreshold": str(LAG_THRESHOLD),
                "offsetResetPolicy": "earliest",
                # A pod beyond the partition count would sit idle.
                "allowIdleConsumers": "false",
            },
        }
        for group, group_topics in sorted(svc.groups.items())
        for topic in group_topics
    ]
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": meta(f"{svc.name}-consumers", svc.name, "consumers"),
        "spec": {
            "scaleTargetRef": {"name": f"{svc.name}-consumers"},
            "pollingInterval": 15,
            "cooldownPeriod": 300,
            # Never zero: with no pod nothing reads the topic, and a cold start adds latency.
            "minReplicaCount": 2,
            "maxReplicaCount": PARTITIONS,
            "triggers": triggers,
        },
    }


def pdb(svc: Service, role: str) -> dict[str, Any]:
    name = svc.name if role == "api" else f"{svc.name}-{role}"
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": meta(name, svc.name, role),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": labels(svc.name, role)}},
    }


REPLICAS = {"api": 3, "relay": 2, "consumers": 2}


def production_deployment(svc: Service, role: str) -> dict[str, Any]:
    """Replicas and spreading of one Deployment in production (a strategic-merge patch)."""
    name = svc.name if role == "api" else f"{svc.name}-{role}"
    selector = {"matchLabels": labels(svc.name, role)}
    resources = {
        "requests": {"cpu": "500m", "memory": "512Mi"},
        "limits": {"memory": "1Gi"},
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": REPLICAS[role],
            "template": {
                "spec": {
                    "affinity": {
                        "podAntiAffinity": {
                            "preferredDuringSchedulingIgnoredDuringExecution": [
                                {
                                    "weight": 100,
                                    "podAffinityTerm": {
                                        "labelSelector": selector,
                                        "topologyKey": "kubernetes.io/hostname",
                                    },
                                }
                            ]
                        }
                    },
                    "topologySpreadConstraints": [
                        {
                            "maxSkew": 1,
                            "topologyKey": "topology.kubernetes.io/zone",
                            "whenUnsatisfiable": "ScheduleAnyway",
                            "labelSelector": selector,
                        }
                    ],
                    "containers": [{"name": svc.name, "resources": resources}],
                }
            },
        },
    }
