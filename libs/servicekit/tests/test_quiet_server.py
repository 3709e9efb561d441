"""The services' uvicorn server ticks once a second, and still serves the Date header and stops
at once on a signal."""

from __future__ import annotations

import asyncio
import signal
import time

import httpx
import uvicorn
from fastapi import FastAPI

from servicekit.embedded.ports import free_port
from servicekit.runner import QuietServer
from servicekit.testing.wait import eventually


async def test_the_quiet_server_serves_and_stops_at_once_on_a_signal() -> None:
    app = FastAPI()

    @app.get("/ping")
    async def ping() -> dict[str, bool]:
        return {"ok": True}

    port = free_port()
    server = QuietServer(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="off")
    )
    serving = asyncio.create_task(server.serve())

    async def started() -> bool:
        return server.started

    await eventually(started, timeout=10)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        first = await client.get("/ping")
        assert first.status_code == 200
        assert first.headers["date"].endswith("GMT")

    asked = time.monotonic()
    server.handle_exit(signal.SIGTERM, None)
    # Not raised again after the server stops (it would end the test run).
    server._captured_signals.clear()
    await asyncio.wait_for(serving, timeout=5)
    # The main loop's one-second wait ends with the signal, not at the next tick.
    assert time.monotonic() - asked < 0.5
