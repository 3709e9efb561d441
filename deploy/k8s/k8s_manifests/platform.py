"""The shared servers: a KafkaTopic per registered topic and its dead letters (Strimzi), and
the PostgreSQL cluster with a role and a database per service (CloudNativePG)."""

from __future__ import annotations

from typing import Any

from contracts.topics import all_topics
from k8s_manifests.model import (
    DLQ_RETENTION_MS,
    EVENT_RETENTION_MS,
    KAFKA_CLUSTER,
    PART_OF,
    PARTITIONS,
    PG_CLUSTER,
    Service,
)


def kafka_topic(name: str, partitions: int, retention_ms: int, dlq: bool) -> dict[str, Any]:
    return {
        "apiVersion": "kafka.strimzi.io/v1beta2",
        "kind": "KafkaTopic",
        "metadata": {
            # Resource names allow no '_': the topic name itself is in spec.topicName.
            "name": name.replace("_", "-"),
            "labels": {
                "strimzi.io/cluster": KAFKA_CLUSTER,
                "app.kubernetes.io/part-of": PART_OF,
                "countertop.io/topic-kind": "dlq" if dlq else "main",
            },
        },
        "spec": {
            "topicName": name,
            "partitions": partitions,
            "replicas": 3,
            "config": {
                "retention.ms": retention_ms,
                "cleanup.policy": "delete",
                "min.insync.replicas": 2,
            },
        },
    }


def topics() -> list[dict[str, Any]]:
    out = []
    for topic in all_topics():
        out.append(kafka_topic(topic.name, PARTITIONS, EVENT_RETENTION_MS, dlq=False))
        out.append(kafka_topic(topic.dlq, PARTITIONS, DLQ_RETENTION_MS, dlq=True))
    return out


def postgres(services: list[Service]) -> list[dict[str, Any]]:
    cluster = {
        "apiVersion": "postgresql.cnpg.io/v1",
        "kind": "Cluster",
        "metadata": {"name": PG_CLUSTER, "labels": {"app.kubernetes.io/part-of": PART_OF}},
        "spec": {
            "instances": 1,
            "primaryUpdateStrategy": "unsupervised",
            "storage": {"size": "20Gi"},
            "postgresql": {"parameters": {"max_connections": "400", "shared_buffers": "256MB"}},
            "managed": {
                "roles": [
                    {
                        "name": svc.db_role,
                        "ensure": "present",
                        "login": True,
                        "connectionLimit": -1,
                        "passwordSecret": {"name": f"{svc.name}-db"},
                    }
                    for svc in services
                ]
            },
            "backup": {
                "retentionPolicy": "30d",
                "barmanObjectStore": {
                    "destinationPath": "s3://countertop-backups/postgres",
                    "s3Credentials": {
                        "accessKeyId": {"name": "countertop-backup-s3", "key": "ACCESS_KEY_ID"},
                        "secretAccessKey": {
                            "name": "countertop-backup-s3",
                            "key": "ACCESS_SECRET_KEY",
                        },
                    },
                    "wal": {"compression": "gzip"},
                    "data": {"compression": "gzip"},
                },
            },
            "monitoring": {"enablePodMonitor": True},
        },
    }
    databases = [
        {
            "apiVersion": "postgresql.cnpg.io/v1",
            "kind": "Database",
            "metadata": {
                "name": svc.database.replace("_", "-"),
                "labels": {"app.kubernetes.io/part-of": PART_OF},
            },
            "spec": {
                "name": svc.database,
                "owner": svc.db_role,
                "cluster": {"name": PG_CLUSTER},
                "ensure": "present",
            },
        }
        for svc in services
    ]
    backup = {
        "apiVersion": "postgresql.cnpg.io/v1",
        "kind": "ScheduledBackup",
        "metadata": {
            "name": f"{PG_CLUSTER}-daily",
            "labels": {"app.kubernetes.io/part-of": PART_OF},
        },
        "spec": {
            "schedule": "0 0 2 * * *",
            "backupOwnerReference": "self",
            "cluster": {"name": PG_CLUSTER},
            "method": "barmanObjectStore",
        },
    }
    return [cluster, *databases, backup]
