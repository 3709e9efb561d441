"""The command line of the local stack.

``postgres``, ``kafka`` and ``mqtt`` each run one embedded server in the foreground; ``up`` runs
the servers and the six services; ``wait-ready`` waits for the services' ``/readyz``;
``await-infra`` waits for the servers (``up`` runs it before each service).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from countertop_local.config import SERVICES, LocalStack
from countertop_local.readiness import server_endpoints, wait_for_servers, wait_for_services
from countertop_local.stack import READY_MESSAGE, up


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m countertop_local",
        description="The Countertop local stack: embedded PostgreSQL, Kafka and MQTT, "
        "and the six services.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    postgres = commands.add_parser("postgres", help="run PostgreSQL in the foreground")
    postgres.add_argument("--port", type=int, help="default: $COUNTERTOP_POSTGRES_PORT or 15432")
    postgres.add_argument(
        "--data-dir", type=Path, help="default: postgres/ under $COUNTERTOP_VAR_DIR or var/"
    )
    kafka = commands.add_parser("kafka", help="run the Kafka-protocol broker in the foreground")
    kafka.add_argument("--port", type=int, help="default: $COUNTERTOP_KAFKA_PORT or 19092")
    mqtt = commands.add_parser("mqtt", help="run the MQTT broker in the foreground")
    mqtt.add_argument("--port", type=int, help="default: $COUNTERTOP_MQTT_PORT or 11883")

    run_up = commands.add_parser("up", help="run the servers and the services until Ctrl-C")
    run_up.add_argument(
        "--procfile", type=Path, help="what to run (default: deploy/local/Procfile)"
    )
    run_up.add_argument(
        "--infra-only", action="store_true", help="run the servers only, no service"
    )

    wait_ready = commands.add_parser(
        "wait-ready", help="wait until every service answers /readyz; exit 1 on timeout"
    )
    wait_ready.add_argument("--timeout", type=float, default=60.0, help="seconds (default 60)")

    await_infra = commands.add_parser(
        "await-infra", help="wait until PostgreSQL, Kafka and MQTT accept connections"
    )
    await_infra.add_argument("--timeout", type=float, default=60.0, help="seconds (default 60)")
    return parser


def _say(text: str) -> None:
    print(text, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    stack = LocalStack.from_env()

    if args.command == "postgres":
        from servicekit.embedded.postgres import EmbeddedPostgres

        data_dir = args.data_dir or stack.postgres_data_dir
        return EmbeddedPostgres(data_dir, args.port or stack.postgres_port).run_foreground()

    if args.command == "kafka":
        from servicekit.embedded.kafka import EmbeddedKafka

        return EmbeddedKafka(args.port or stack.kafka_port).run_foreground()

    if args.command == "mqtt":
        from servicekit.embedded.mqtt import EmbeddedMqtt

        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        return EmbeddedMqtt(args.port or stack.mqtt_port).run_foreground()

    if args.command == "up":
        return up(args.procfile, infra_only=args.infra_only)

    if args.command == "wait-ready":
        pending = wait_for_services(SERVICES, os.environ, timeout=args.timeout, report=_say)
        if pending:
            names = ", ".join(f"{s.name} ({s.readyz_url(os.environ)})" for s in pending)
            print(f"not ready after {args.timeout:g}s: {names}", file=sys.stderr)
            return 1
        _say(READY_MESSAGE)
        return 0

    if args.command == "await-infra":
        # Best effort: a service that starts before its servers retries by itself.
        missing = wait_for_servers(server_endpoints(os.environ), timeout=args.timeout, report=_say)
        for endpoint in missing:
            print(
                f"{endpoint.name} at {endpoint} is not answering after {args.timeout:g}s; "
                "starting anyway",
                file=sys.stderr,
            )
        return 0

    raise AssertionError(f"unhandled command {args.command}")
