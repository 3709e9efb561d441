"""Every service's OpenAPI, fuzzed by schemathesis: no input a client can send gives a 5xx.

The services run as in ``system`` (their full lifespans on the real PostgreSQL and broker) and
are served over real HTTP by uvicorn on free ports, so schemathesis talks to them as any client
would: with a valid HQ admin token, a fixed seed and a bounded number of examples per operation,
so that a run is repeatable and a failure can be replayed from its printed ``curl`` line.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator

import pytest
import uvicorn
from fastapi import FastAPI

from servicekit.embedded.ports import free_port
from servicekit.testing.wait import eventually

from .conftest import System

pytestmark = [pytest.mark.smoke, pytest.mark.timeout(600)]

SEED = "20261126"
MAX_EXAMPLES = os.environ.get("COUNTERTOP_FUZZ_EXAMPLES", "8")


@contextlib.asynccontextmanager
async def served(app: FastAPI) -> AsyncIterator[str]:
    """``app`` (already started by the system fixture) on a real port, for the block."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_config=None)
    )
    task = asyncio.create_task(server.serve())
    try:

        async def serving() -> bool:
            if task.done():
                task.result()  # it failed to start: say why
            return bool(server.started)

        await eventually(serving, timeout=30.0)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def fuzz(base_url: str, token: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{base_url}/openapi.json",
        "--checks",
        os.environ.get(
            "COUNTERTOP_FUZZ_CHECKS",
            "not_a_server_error,status_code_conformance,content_type_conformance",
        ),
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        MAX_EXAMPLES,
        "--seed",
        SEED,
        # One worker: on Python 3.11 two threads parsing source at once can fail inside
        # hypothesis (``SystemError: AST constructor recursion depth mismatch``, a race in
        # CPython's AST constructor), reported as an error of whichever operation it hit.
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--header",
        f"Authorization: Bearer {token}",
        "--no-color",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    return process.returncode or 0, output.decode(errors="replace")


@pytest.mark.parametrize("name", ["identity", "inventory", "orders", "members", "payments"])
async def test_no_request_gives_a_server_error(system: System, name: str) -> None:
    merchant = await system.onboard()
    service = getattr(system, name)
    async with served(service.app) as base_url:
        code, output = await fuzz(base_url, merchant.hq.access_token)
    assert code == 0, output[-6000:]
