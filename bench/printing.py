"""Benchmark of kitchen printing: ``orders.kitchen_ticket.created`` → gateway → bytes on a
network printer.

The device-gateway app runs in this process as in production (inbox consumer, print job queue
in PostgreSQL, dispatcher woken by NOTIFY, raw TCP to the printer) on the in-memory bus, with
a fake network printer (``device_gateway.printing.fakeprinter``) on a local TCP port that
decodes what it receives. The broker hop is left out: ``bench/outbox_relay.py`` measures it.

Two runs after a warm-up:

* latency: an open-loop producer at ``--rate`` tickets/s for ``--duration`` seconds; the time
  from a ticket event's ``occurred_at`` (set just before it is published) to the fake printer
  having decoded the ticket's cut, as p50/p95/p99/max;
* throughput: ``--burst`` tickets published at once; tickets/s from the first publish to the
  last cut.

Every ticket must print exactly once; the run exits non-zero otherwise. PostgreSQL is started
for the run unless ``POSTGRES_URL`` names a server; the run's database is dropped at the end.

    python bench/printing.py [--rate 50] [--duration 20] [--burst 1000] [--printers 2]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import re
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

import device_gateway
from contracts.events.identity import StoreCreated
from contracts.events.orders import KitchenTicketCreated, TicketLine
from contracts.registry import make_envelope
from contracts.topics import topic_for_event_type
from device_gateway.config import Settings
from device_gateway.main import create_app
from device_gateway.printing.fakeprinter import FakePrinter, Printout
from servicekit.auth import Role, generate_signing_key
from servicekit.bus.base import OutgoingMessage
from servicekit.bus.factory import InMemoryBus
from servicekit.db import drop_database, ensure_database
from servicekit.embedded.ports import free_port
from servicekit.migrations import upgrade_async
from servicekit.testing.tokens import bearer_headers, static_verifier

MIGRATIONS = Path(device_gateway.__file__).parent / "migrations"
ORDER_NUMBER = re.compile(r"Order #([0-9A-F]{6})")


@contextlib.contextmanager
def postgres(fsync: bool) -> Iterator[str]:
    url = os.environ.get("POSTGRES_URL")
    if url:
        yield url
        return
    from servicekit.embedded.postgres import EmbeddedPostgres

    with tempfile.TemporaryDirectory(prefix="ct-bench-print-") as tmp:
        server = EmbeddedPostgres(Path(tmp) / "data", port=free_port(), fsync=fsync)
        with server:
            yield server.url


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    index = min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))
    return ordered[index]


class Run:
    def __init__(self, bus: InMemoryBus, merchant_id: uuid.UUID, store_id: uuid.UUID) -> None:
        self.bus = bus
        self.merchant_id = merchant_id
        self.store_id = store_id
        self.sent: dict[str, float] = {}
        self.printed: dict[str, list[float]] = {}
        self.done = asyncio.Event()
        self.expected = 0

    def on_print(self, printout: Printout) -> None:
        match = ORDER_NUMBER.search(printout.text)
        if match is None:
            return
        self.printed.setdefault(match.group(1), []).append(time.time())
        if len(self.printed) >= self.expected:
            self.done.set()

    async def publish_ticket(self, station: str) -> None:
        order_id = uuid.uuid4()
        ticket = KitchenTicketCreated(
            ticket_id=uuid.uuid4(),
            order_id=order_id,
            store_id=self.store_id,
            station=station,
            table="A1",
            lines=[
                TicketLine(name="牛肉面", quantity=2, modifiers=["加辣"], notes="不要香菜"),
                TicketLine(name="Dumplings 饺子", quantity=1),
            ],
        )
        number = order_id.hex[-6:].upper()
        now = time.time()
        self.sent[number] = now
        event = make_envelope(
            ticket,
            producer="orders",
            aggregate_id=ticket.ticket_id,
            merchant_id=self.merchant_id,
            occurred_at=datetime_from(now),
        )
        await self.bus.broker.append(
            [
                OutgoingMessage(
                    topic=topic_for_event_type(event.type),
                    key=event.aggregate_id.encode(),
                    value=event.model_dump_json().encode(),
                )
            ]
        )

    def latencies(self) -> list[float]:
        return [self.printed[n][0] - t for n, t in self.sent.items() if n in self.printed]

    def duplicates(self) -> int:
        return sum(len(v) - 1 for v in self.printed.values())


def datetime_from(ts: float) -> Any:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, UTC)


async def bench(args: argparse.Namespace, url: str) -> dict[str, Any]:
    database_url = (
        url.replace("postgresql://", "postgresql+asyncpg://", 1).rsplit("/", 1)[0]
        + f"/ct_bench_print_{uuid.uuid4().hex[:8]}"
    )
    await ensure_database(database_url)
    await upgrade_async(MIGRATIONS, database_url)
    key = generate_signing_key()
    bus = InMemoryBus()
    settings = Settings(
        database_url=database_url,
        log_level="WARNING",
        run_mqtt_bridge=False,
        outbox_poll_interval=0.5,
        print_poll_interval=1.0,
    )
    app = create_app(settings, bus=bus, token_verifier=static_verifier(key))
    merchant_id, store_id = uuid.uuid4(), uuid.uuid4()
    run = Run(bus, merchant_id, store_id)
    printers = [FakePrinter(free_port(), on_print=run.on_print) for _ in range(args.printers)]
    stations = [f"station-{i}" for i in range(args.printers)]
    result: dict[str, Any] = {}
    process = psutil.Process()
    try:
        for printer in printers:
            await printer.start()
        async with app.router.lifespan_context(app):
            import httpx

            transport = httpx.ASGITransport(app=app)
            headers = bearer_headers(
                key, merchant_id, scopes=frozenset({"devices:manage"}), role=Role.HQ_ADMIN
            )
            created = StoreCreated(
                store_id=store_id,
                merchant_id=merchant_id,
                code="B1",
                name="Bench",
                address="-",
                timezone="Asia/Shanghai",
                business_hours=[],
                region_id=None,
                status="active",
                version=1,
            )
            await bus.broker.append(
                [
                    OutgoingMessage(
                        topic="identity.store",
                        key=str(store_id).encode(),
                        value=make_envelope(
                            created,
                            producer="identity",
                            aggregate_id=store_id,
                            merchant_id=merchant_id,
                        )
                        .model_dump_json()
                        .encode(),
                    )
                ]
            )
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
                for _ in range(200):
                    r = await client.get(f"/v1/stores/{store_id}/devices", headers=headers)
                    if r.status_code == 200:
                        break
                    await asyncio.sleep(0.05)
                for i, printer in enumerate(printers):
                    r = await client.post(
                        "/v1/devices/bind",
                        headers=headers,
                        json={
                            "sn": f"BENCH{i}{uuid.uuid4().hex[:6]}",
                            "mac": f"00:11:22:33:44:{i:02X}",
                            "type": "kitchen_printer",
                            "store_id": str(store_id),
                            "station": stations[i],
                            "connection": {
                                "kind": "tcp",
                                "host": "127.0.0.1",
                                "port": printer.port,
                            },
                        },
                    )
                    assert r.status_code == 201, r.text

            async def phase(count: int, rate: float | None) -> tuple[float, float]:
                run.sent.clear()
                run.printed.clear()
                run.done.clear()
                run.expected = count
                cpu0 = process.cpu_times()
                start = time.perf_counter()
                for i in range(count):
                    if rate:
                        delay = start + i / rate - time.perf_counter()
                        if delay > 0:
                            await asyncio.sleep(delay)
                    await run.publish_ticket(stations[i % len(stations)])
                await asyncio.wait_for(run.done.wait(), args.phase_timeout)
                # Give duplicates, if any, a moment to show up before counting them.
                await asyncio.sleep(0.5)
                elapsed = time.perf_counter() - start
                cpu1 = process.cpu_times()
                return elapsed, (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)

            await phase(args.warmup, None)
            count = int(args.rate * args.duration)
            _, cpu = await phase(count, args.rate)
            lat = run.latencies()
            result["latency"] = {
                "rate": args.rate,
                "tickets": count,
                "printed": len(run.printed),
                "duplicates": run.duplicates(),
                "p50_ms": round(percentile(lat, 50) * 1000, 1),
                "p95_ms": round(percentile(lat, 95) * 1000, 1),
                "p99_ms": round(percentile(lat, 99) * 1000, 1),
                "max_ms": round(max(lat) * 1000, 1),
                "cpu_per_ticket_ms": round(cpu / count * 1000, 2),
            }
            _elapsed, cpu = await phase(args.burst, None)
            last = max(v[0] for v in run.printed.values())
            first = min(run.sent.values())
            result["throughput"] = {
                "tickets": args.burst,
                "printed": len(run.printed),
                "duplicates": run.duplicates(),
                "tickets_per_s": round(args.burst / (last - first), 1),
                "cpu_per_ticket_ms": round(cpu / args.burst * 1000, 2),
            }
    finally:
        for printer in printers:
            await printer.stop()
        with contextlib.suppress(Exception):
            await drop_database(database_url)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=50.0, help="tickets/s in the latency run")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of the latency run")
    parser.add_argument("--burst", type=int, default=1000, help="tickets in the throughput run")
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--printers", type=int, default=2, help="stations, one printer each")
    parser.add_argument("--phase-timeout", type=float, default=120.0)
    parser.add_argument("--fsync", choices=("on", "off"), default="on")
    args = parser.parse_args()
    with postgres(args.fsync == "on") as url:
        result = asyncio.run(bench(args, url))
    result["machine"] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    print(json.dumps(result, indent=2))
    ok = all(
        r["printed"] == r["tickets"] and r["duplicates"] == 0
        for r in (result["latency"], result["throughput"])
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
