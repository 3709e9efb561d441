"""Generate the parts of ``deploy/k8s`` that follow from the code.

Ports, environment prefixes, consumer groups and their topics, and the topic registry are read
from the services themselves, so the manifests cannot drift from what the processes do:
``make k8s-generate`` rewrites the generated files and ``deploy/k8s/tests`` fails when a
checked-in file differs from what this package would write now.

Written here: per service its ServiceAccount, ConfigMap, Service, Deployments (API, outbox relay,
consumers) and migrations Job; the KafkaTopics; the CloudNativePG cluster with a role and a
Database per service; the NetworkPolicies; the production autoscaling and disruption budgets;
the Grafana dashboards. Everything else under ``deploy/k8s`` is written by hand.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from k8s_manifests.dashboards import dashboards
from k8s_manifests.model import ROOT, Service, dump, read_services
from k8s_manifests.network import network_policies
from k8s_manifests.platform import postgres, topics
from k8s_manifests.workloads import hpa, pdb, production_deployment, scaled_object, service_objects

__all__ = ["main", "read_services", "render"]


def render(services: list[Service]) -> dict[Path, str]:
    """Every generated file, by path under ``deploy/k8s``, with its content."""
    files: dict[Path, str] = {}
    for svc in services:
        files[Path(f"base/services/{svc.name}.yaml")] = dump(service_objects(svc))
    files[Path("base/kafka/topics.yaml")] = dump(topics())
    files[Path("base/postgres/cluster.yaml")] = dump(postgres(services))
    files[Path("base/network-policies.yaml")] = dump(network_policies(services))
    files[Path("overlays/production/autoscaling.yaml")] = dump(
        [hpa(svc) for svc in services] + [scaled_object(svc) for svc in services if svc.consumers]
    )
    files[Path("overlays/production/deployments.yaml")] = dump(
        [production_deployment(svc, role) for svc in services for role in svc.roles]
    )
    files[Path("overlays/production/disruption-budgets.yaml")] = dump(
        [pdb(svc, role) for svc in services for role in svc.roles]
    )
    for name, board in dashboards(services).items():
        files[Path(f"base/monitoring/dashboards/{name}.json")] = (
            json.dumps(board, indent=2, sort_keys=False) + "\n"
        )
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="fail when a file is out of date")
    args = parser.parse_args(argv)
    stale = []
    for relative, content in render(read_services()).items():
        path = ROOT / relative
        current = path.read_text() if path.exists() else None
        if current == content:
            continue
        stale.append(str(relative))
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
    verb = "out of date" if args.check else "written"
    for relative in stale:
        print(f"{verb}: deploy/k8s/{relative}")
    return 1 if args.check and stale else 0
